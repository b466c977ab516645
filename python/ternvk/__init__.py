"""ternvk: BitNet b1.58 ternary LLMs on any Vulkan GPU, from Python.

A ctypes binding over libternvk's C API (include/ternvk.h): nothing to compile, nothing from PyPI.

    import ternvk
    model = ternvk.Model()                      # the shipped model on the best device
    print(model.generate("ROMEO:", max_tokens=32, temperature=0))
    for piece in model.stream("JULIET:", max_tokens=64):
        print(piece, end="", flush=True)

Errors raise ternvk.Error with the C API's message (e.status is the status name).
"""

import ctypes
import os
import pathlib

__all__ = ["Error", "Model", "devices", "version"]


class Error(Exception):
    """A failed ternvk call: str(e) is the message, e.status the status name ("TERNVK_ERROR_FAILED")."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _load_library():
    here = pathlib.Path(__file__).resolve().parent
    candidates = []
    if os.environ.get("TERNVK_LIBRARY"):
        candidates.append(os.environ["TERNVK_LIBRARY"])
    # Installed by cmake --install: P/lib/python3/dist-packages/ternvk/ -> P/lib/libternvk.so.0
    candidates.append(str(here.parents[2] / "libternvk.so.0"))
    candidates.append("libternvk.so.0")  # the system's library path (the Debian package: /usr/lib)
    problems = []
    for candidate in candidates:
        if os.sep in candidate and not os.path.exists(candidate):
            problems.append(candidate + ": no such file")
            continue
        try:
            return ctypes.CDLL(candidate)
        except OSError as e:
            problems.append(str(e))
    raise ImportError("ternvk: cannot load libternvk.so.0 (" + "; ".join(problems) +
                      "); set TERNVK_LIBRARY to the library's path")


_lib = _load_library()

_c_int32_p = ctypes.POINTER(ctypes.c_int32)
_handle = ctypes.c_void_p


class _DeviceInfo(ctypes.Structure):
    _fields_ = [("index", ctypes.c_int32), ("name", ctypes.c_char * 256), ("type", ctypes.c_char * 32),
                ("vendor", ctypes.c_char * 32), ("driver", ctypes.c_char * 256), ("vendor_id", ctypes.c_uint32),
                ("device_id", ctypes.c_uint32), ("device_local_bytes", ctypes.c_uint64),
                ("subgroup_size", ctypes.c_int32), ("fast_int8_dot", ctypes.c_int32), ("is_default", ctypes.c_int32)]


_PROGRESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)


class _ModelParams(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32), ("devices", _c_int32_p), ("device_count", ctypes.c_size_t),
                ("split", _c_int32_p), ("split_count", ctypes.c_size_t), ("context", ctypes.c_int32),
                ("sequences", ctypes.c_int32), ("prefill_chunk", ctypes.c_int32), ("head", ctypes.c_int),
                ("plan", ctypes.c_int), ("progress", _PROGRESS), ("progress_user_data", ctypes.c_void_p)]


class _DeviceChoiceParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("chain_layers", ctypes.c_int), ("matrix_splits", ctypes.c_int)]


class _ModelInfo(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("architecture", ctypes.c_char_p), ("chat_format", ctypes.c_char_p),
                ("device_name", ctypes.c_char_p), ("plan", ctypes.c_char_p)] + \
               [(name, ctypes.c_int32) for name in (
                   "layers", "hidden_size", "heads", "kv_heads", "head_dim", "ffn_size", "vocab_size", "max_context",
                   "context", "sequences", "max_batch", "stages", "bos", "eos", "eot")] + \
               [("gpu_bytes", ctypes.c_uint64), ("validation_errors", ctypes.c_uint64)]


class _Sampling(ctypes.Structure):
    _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float), ("repeat_last_n", ctypes.c_int32),
                ("frequency_penalty", ctypes.c_float), ("presence_penalty", ctypes.c_float),
                ("seed", ctypes.c_uint64)]


class _ChatMessage(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char_p), ("content", ctypes.c_char_p)]


def _declare(name, restype, *argtypes):
    function = getattr(_lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


_status = ctypes.c_int
_size_p = ctypes.POINTER(ctypes.c_size_t)
_char_pp = ctypes.POINTER(ctypes.c_char_p)
_version = _declare("ternvk_version", ctypes.c_char_p)
_last_error = _declare("ternvk_last_error", ctypes.c_char_p)
_status_name = _declare("ternvk_status_name", ctypes.c_char_p, _status)
_device_list = _declare("ternvk_device_list", _status, ctypes.POINTER(_DeviceInfo), ctypes.c_size_t, _size_p)
_model_default_params = _declare("ternvk_model_default_params", _ModelParams)
_model_load = _declare("ternvk_model_load_with_choices", _status, ctypes.c_char_p, ctypes.POINTER(_ModelParams),
                       ctypes.POINTER(_DeviceChoiceParams), ctypes.POINTER(_handle))
_model_free = _declare("ternvk_model_free", _status, _handle)
_model_get_info = _declare("ternvk_model_get_info", _status, _handle, ctypes.POINTER(_ModelInfo))
_model_get_device_choices = _declare("ternvk_model_get_device_choices", _status, _handle,
                                     ctypes.POINTER(ctypes.c_char_p))
_tokenize = _declare("ternvk_tokenize", _status, _handle, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                     _c_int32_p, ctypes.c_size_t, _size_p)
_detokenize = _declare("ternvk_detokenize", _status, _handle, _c_int32_p, ctypes.c_size_t, ctypes.c_int32,
                       ctypes.c_char_p, ctypes.c_size_t, _size_p)
_detokenizer_create = _declare("ternvk_detokenizer_create", _status, _handle, ctypes.c_int32,
                               ctypes.POINTER(_handle))
_detokenizer_feed = _declare("ternvk_detokenizer_feed", _status, _handle, ctypes.c_int32,
                             ctypes.POINTER(ctypes.c_void_p), _size_p)
_detokenizer_flush = _declare("ternvk_detokenizer_flush", _status, _handle, ctypes.POINTER(ctypes.c_void_p),
                              _size_p)
_detokenizer_free = _declare("ternvk_detokenizer_free", _status, _handle)
_chat_tokenize = _declare("ternvk_chat_tokenize", _status, _handle, ctypes.POINTER(_ChatMessage), ctypes.c_size_t,
                          ctypes.c_int32, _c_int32_p, ctypes.c_size_t, _size_p)
_sampling_default = _declare("ternvk_sampling_default", _Sampling)
_sequence_create = _declare("ternvk_sequence_create", _status, _handle, ctypes.POINTER(_handle))
_sequence_free = _declare("ternvk_sequence_free", _status, _handle)
_sequence_set_sampling = _declare("ternvk_sequence_set_sampling", _status, _handle, ctypes.POINTER(_Sampling))
_sequence_prefill = _declare("ternvk_sequence_prefill", _status, _handle, _c_int32_p, ctypes.c_size_t)
_sequence_sample = _declare("ternvk_sequence_sample", _status, _handle, _c_int32_p)
_sequence_length = _declare("ternvk_sequence_length", _status, _handle, _c_int32_p)

_TOKENIZE_ADD_BOS = 1
_TOKENIZE_PARSE_SPECIAL = 2
_BUFFER_TOO_SMALL = 4
_HEADS = {"f16": 0, "int8": 1}
_PLANS = {"auto": 0, "gpu": 1, "cpu": 2}
_CHAINS = {"auto": 0, "off": 1, "on": 2, "measure": 3}
_SPLITS = {"auto": 0, "rule": 1, "measure": 2}


def _check(status):
    if status != 0:
        raise Error(_status_name(status).decode(), _last_error().decode("utf-8", "replace"))


def _ids(tokens):
    return (ctypes.c_int32 * len(tokens))(*tokens)


def _text(pointer, length):
    return ctypes.string_at(pointer, length).decode("utf-8", "replace") if length else ""


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return _version().decode()


def devices():
    """The Vulkan devices, as dicts (index, name, type, vendor, driver, device_local_bytes, is_default, ...)."""
    count = ctypes.c_size_t()
    status = _device_list(None, 0, ctypes.byref(count))
    if status not in (0, _BUFFER_TOO_SMALL):
        _check(status)
    infos = (_DeviceInfo * count.value)()
    _check(_device_list(infos, count.value, ctypes.byref(count)))
    out = []
    for d in infos:
        entry = {name: getattr(d, name) for name, _ in _DeviceInfo._fields_}
        for name in ("name", "type", "vendor", "driver"):
            entry[name] = entry[name].decode("utf-8", "replace")
        entry["fast_int8_dot"] = bool(entry["fast_int8_dot"])
        entry["is_default"] = bool(entry["is_default"])
        out.append(entry)
    return out


class Model:
    """A model loaded on one device (or a pipeline over several).

    path: a GGUF file or a Hugging Face folder; None: the model that ships with ternvk.
    device: a device index from ternvk.devices(), a list of them (a pipeline), or None for the best.
    split: layers per device with a device list (None: automatic). context: positions per sequence
    (0: the model's, at most 4096). sequences: sequences that may exist at once. head: "f16" or
    "int8". plan: "auto", "gpu" or "cpu". chain_layers: "auto", "off", "on" or "measure";
    matrix_splits: "auto", "rule" or "measure" (what the engine decides on the device, as the CLI's
    --chain-layers and --matrix-splits; device_choices() says what was chosen).
    """

    def __init__(self, path=None, device=None, *, split=None, context=0, sequences=1, head="f16", plan="auto",
                 chain_layers="auto", matrix_splits="auto"):
        self._handle = None
        params = _model_default_params()
        if isinstance(device, (list, tuple)):
            device_ids = _ids(device)
            params.devices = device_ids
            params.device_count = len(device)
        elif device is not None:
            params.device = int(device)
        if split is not None:
            split_ids = _ids(split)
            params.split = split_ids
            params.split_count = len(split)
        params.context = int(context)
        params.sequences = int(sequences)
        if head not in _HEADS:
            raise Error("TERNVK_ERROR_INVALID_ARGUMENT", f"head {head!r}: expected one of {sorted(_HEADS)}")
        if plan not in _PLANS:
            raise Error("TERNVK_ERROR_INVALID_ARGUMENT", f"plan {plan!r}: expected one of {sorted(_PLANS)}")
        params.head = _HEADS[head]
        params.plan = _PLANS[plan]
        choices = _DeviceChoiceParams(size=ctypes.sizeof(_DeviceChoiceParams))  # every choice 0: auto
        for name, value, allowed in (("chain_layers", chain_layers, _CHAINS), ("matrix_splits", matrix_splits, _SPLITS)):
            if value not in allowed:
                raise Error("TERNVK_ERROR_INVALID_ARGUMENT", f"{name} {value!r}: expected one of {sorted(allowed)}")
            setattr(choices, name, allowed[value])
        handle = _handle()
        _check(_model_load(os.fsencode(path) if path is not None else None, ctypes.byref(params),
                           ctypes.byref(choices), ctypes.byref(handle)))
        self._handle = handle

    def close(self):
        """Frees the model (also done when it is garbage-collected)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None:
            _model_free(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _live(self):
        if self._handle is None:
            raise Error("TERNVK_ERROR_INVALID_HANDLE", "the model is closed")
        return self._handle

    def info(self):
        """The model's shape, special tokens, device and plan, as a dict."""
        info = _ModelInfo()
        _check(_model_get_info(self._live(), ctypes.byref(info)))
        out = {name: getattr(info, name) for name, _ in _ModelInfo._fields_}
        for name in ("path", "architecture", "chat_format", "device_name", "plan"):
            out[name] = out[name].decode("utf-8", "replace")
        return out

    def device_choices(self):
        """What ternvk chose on the device (layers chained or not, the matrices' split rule), with why."""
        text = ctypes.c_char_p()
        _check(_model_get_device_choices(self._live(), ctypes.byref(text)))
        return text.value.decode("utf-8", "replace")

    def tokenize(self, text, add_bos=False, parse_special=False):
        """Token ids of `text` (add_bos: BOS first when the vocabulary has one)."""
        data = text.encode("utf-8")
        flags = (_TOKENIZE_ADD_BOS if add_bos else 0) | (_TOKENIZE_PARSE_SPECIAL if parse_special else 0)
        count = ctypes.c_size_t()
        capacity = len(data) + 2
        while True:
            ids = (ctypes.c_int32 * capacity)()
            status = _tokenize(self._live(), data, len(data), flags, ids, capacity, ctypes.byref(count))
            if status != _BUFFER_TOO_SMALL:
                _check(status)
                return list(ids[:count.value])
            capacity = count.value

    def detokenize(self, tokens, render_special=False):
        """The text of a whole token sequence."""
        ids = _ids(tokens)
        length = ctypes.c_size_t()
        status = _detokenize(self._live(), ids, len(tokens), int(render_special), None, 0, ctypes.byref(length))
        if status != _BUFFER_TOO_SMALL:
            _check(status)
        buffer = ctypes.create_string_buffer(length.value + 1)
        _check(_detokenize(self._live(), ids, len(tokens), int(render_special), buffer, len(buffer),
                           ctypes.byref(length)))
        return buffer.raw[:length.value].decode("utf-8", "replace")

    def chat_tokens(self, messages, add_generation_prompt=True):
        """The model's chat prompt for [{"role": ..., "content": ...}, ...] as token ids (message text is
        never read for control tokens). Raises Error for a message that holds one of the chat format's
        plain-text turn markers (a line "Assistant: ..." in the plain format, "[/INST]" in Llama-2's)."""
        array = (_ChatMessage * len(messages))(
            *[_ChatMessage(m["role"].encode("utf-8"), m["content"].encode("utf-8")) for m in messages])
        count = ctypes.c_size_t()
        status = _chat_tokenize(self._live(), array, len(messages), int(add_generation_prompt), None, 0,
                                ctypes.byref(count))
        if status != _BUFFER_TOO_SMALL:
            _check(status)
        ids = (ctypes.c_int32 * count.value)()
        _check(_chat_tokenize(self._live(), array, len(messages), int(add_generation_prompt), ids, count.value,
                              ctypes.byref(count)))
        return list(ids)

    def stream(self, prompt, max_tokens=128, temperature=None, top_k=None, top_p=None, min_p=None,
               repeat_penalty=None, seed=None):
        """Generates from `prompt` (text, or a list of token ids) and yields the continuation in pieces
        of whole UTF-8 characters as they come. Unset sampling values are the CLI's defaults
        (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1, seed 0xC0FFEE); the
        tokens equal `ternvk run`'s with the same settings. Stop early by closing the iterator."""
        sampling = _sampling_default()
        for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("min_p", min_p),
                            ("repeat_penalty", repeat_penalty), ("seed", seed)):
            if value is not None:
                setattr(sampling, name, value)
        tokens = self.tokenize(prompt, add_bos=True) if isinstance(prompt, str) else list(prompt)
        if max_tokens < 0:
            raise Error("TERNVK_ERROR_INVALID_ARGUMENT", f"max_tokens {max_tokens} is negative")
        info = self.info()
        stops = {t for t in (info["eos"], info["eot"]) if t >= 0}
        sequence, detokenizer = _handle(), _handle()
        _check(_sequence_create(self._live(), ctypes.byref(sequence)))
        try:
            _check(_detokenizer_create(self._live(), 0, ctypes.byref(detokenizer)))
            _check(_sequence_set_sampling(sequence, ctypes.byref(sampling)))
            _check(_sequence_prefill(sequence, _ids(tokens), len(tokens)))
            yield from self._continue(sequence, detokenizer, max_tokens, stops, info["context"])
        finally:
            if detokenizer:
                _detokenizer_free(detokenizer)
            _sequence_free(sequence)

    def _continue(self, sequence, detokenizer, max_tokens, stops, context):
        # The loop of ternvk_generate (and `ternvk run`), step by step so the caller can stop.
        piece, length, token, position = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_int32(), ctypes.c_int32()
        if max_tokens > 0:
            _check(_sequence_sample(sequence, ctypes.byref(token)))
        for generated in range(1, max_tokens + 1):
            if token.value in stops:
                break
            _check(_detokenizer_feed(detokenizer, token.value, ctypes.byref(piece), ctypes.byref(length)))
            if length.value:
                yield _text(piece.value, length.value)
            if generated == max_tokens:
                break
            _check(_sequence_length(sequence, ctypes.byref(position)))
            if position.value >= context:
                break
            one = (ctypes.c_int32 * 1)(token.value)
            _check(_sequence_prefill(sequence, one, 1))
            _check(_sequence_sample(sequence, ctypes.byref(token)))
        _check(_detokenizer_flush(detokenizer, ctypes.byref(piece), ctypes.byref(length)))
        if length.value:
            yield _text(piece.value, length.value)

    def generate(self, prompt, max_tokens=128, temperature=None, top_k=None, top_p=None, min_p=None,
                 repeat_penalty=None, seed=None):
        """The continuation of `prompt` as one string (see stream() for the arguments)."""
        return "".join(self.stream(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                   top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, seed=seed))


__version__ = version()
