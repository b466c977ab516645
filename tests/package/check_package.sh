#!/usr/bin/env bash
# The installed package as its users meet it, one step per ctest entry:
#   install     cmake --install into a temporary prefix; the files, the SONAME, the exported
#               symbols; the installed CLI's greedy text (the reference the other steps compare to)
#   pkg-config  examples/simple.c built with `pkg-config --cflags --libs ternvk` prints that text
#   cmake       examples/ as a separate CMake project (find_package(ternvk)): ternvk-simple with
#               the shared and the static library, and ternvk-batched equal to its solo runs
#   python      the Python binding with Debian's python3 (tests/package/test_python.py)
#   deb         cpack -G DEB: the package's Depends and contents
# Usage: check_package.sh STEP BUILD_DIR SOURCE_DIR WORK_DIR
set -euo pipefail
step=$1 build=$2 source=$3 work=$4
prefix=$work/prefix
model=$prefix/share/ternvk/models/ternvk-shakespeare/model.gguf
# Nothing from the build tree or the environment may help the installed files find each other.
unset TERNVK_MODEL TERNVK_LIBRARY LD_LIBRARY_PATH PYTHONPATH

fail() {
  echo "check_package $step: $*" >&2
  exit 1
}
same() {  # same FILE_EXPECTED FILE_GOT
  cmp -s "$1" "$2" || { diff "$1" "$2" >&2 || true; fail "$2 differs from $1"; }
}

case $step in
  install)
    rm -rf "$prefix" "$work/out"
    mkdir -p "$work/out"
    cmake --install "$build" --prefix "$prefix" > "$work/out/install.log"
    for f in include/ternvk.h lib/libternvk.so lib/libternvk.so.0 lib/pkgconfig/ternvk.pc \
             lib/cmake/ternvk/ternvkConfig.cmake lib/cmake/ternvk/ternvkConfigVersion.cmake \
             lib/cmake/ternvk/ternvkTargets.cmake bin/ternvk share/ternvk/models/ternvk-shakespeare/model.gguf \
             lib/python3/dist-packages/ternvk/__init__.py share/doc/ternvk/examples/simple.c; do
      [ -e "$prefix/$f" ] || fail "cmake --install did not install $f"
    done
    if [ -e "$build/apps/ternvk-chat" ]; then [ -e "$prefix/bin/ternvk-chat" ] || fail "ternvk-chat not installed"; fi
    if [ -e "$build/runtime/libternvk.a" ]; then [ -e "$prefix/lib/libternvk.a" ] || fail "libternvk.a not installed"; fi
    # (Outputs are captured, then searched from a here-string: with pipefail, a grep -q that stops reading
    # early can fail the command feeding it with SIGPIPE.)
    dynamic=$(readelf -d "$prefix/lib/libternvk.so.0")
    grep -q 'SONAME.*\[libternvk\.so\.0\]' <<< "$dynamic" || fail "SONAME is not libternvk.so.0"
    exported=$(nm -D --defined-only "$prefix/lib/libternvk.so.0" | awk '{print $3}')
    grep -q '^ternvk_generate$' <<< "$exported" || fail "ternvk_generate is not exported"
    others=$(echo "$exported" | grep -v '^ternvk_' || true)
    [ -z "$others" ] || fail "libternvk exports more than the C API: $(echo "$others" | head -5 | tr '\n' ' ')"
    # The reference: the installed CLI, run from elsewhere, with the model it finds by itself.
    (cd / && "$prefix/bin/ternvk" run -p "ROMEO:" -n 32 --temp 0 --no-stats) > "$work/out/cli.txt"
    [ "$(head -c 6 "$work/out/cli.txt")" = "ROMEO:" ] || fail "the installed CLI printed: $(cat "$work/out/cli.txt")"
    [ "$(wc -c < "$work/out/cli.txt")" -gt 40 ] || fail "the installed CLI generated too little"
    ;;
  pkg-config)
    export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
    cflags=$(pkg-config --cflags ternvk)
    libs=$(pkg-config --libs ternvk)
    libdir=$(pkg-config --variable=libdir ternvk)
    [ "$(pkg-config --modversion ternvk)" = "$(sed -n 's/^Version: //p' "$PKG_CONFIG_PATH/ternvk.pc")" ] || fail "modversion"
    # shellcheck disable=SC2086
    cc -std=c99 -Wall -Wextra -pedantic -Werror "$source/examples/simple.c" $cflags $libs -Wl,-rpath,"$libdir" \
       -o "$work/out/ternvk-simple-pc"
    linked=$(ldd "$work/out/ternvk-simple-pc")
    grep -q "libternvk.so.0 => $(readlink -f "$libdir")/\|libternvk.so.0 => $libdir/" <<< "$linked" ||
      fail "ternvk-simple does not use the installed library: $(echo "$linked" | grep ternvk)"
    (cd / && "$work/out/ternvk-simple-pc" -m "$model" -p "ROMEO:" -n 32) > "$work/out/simple-pc.txt"
    same "$work/out/cli.txt" "$work/out/simple-pc.txt"
    ;;
  cmake)
    rm -rf "$work/examples-build"
    cmake -S "$prefix/share/doc/ternvk/examples" -B "$work/examples-build" -DCMAKE_PREFIX_PATH="$prefix" \
          -DCMAKE_BUILD_TYPE=Release > "$work/out/examples-configure.log"
    cmake --build "$work/examples-build" -j2 > "$work/out/examples-build.log"
    # Without -m: the library finds the installed model beside itself.
    (cd / && "$work/examples-build/ternvk-simple" -p "ROMEO:" -n 32) > "$work/out/simple-cmake.txt"
    same "$work/out/cli.txt" "$work/out/simple-cmake.txt"
    if [ -e "$prefix/lib/libternvk.a" ]; then  # built unless -DTERNVK_STATIC_LIBRARY=OFF
      static_linked=$(ldd "$work/examples-build/ternvk-simple-static")
      if grep -q libternvk <<< "$static_linked"; then fail "the static build links libternvk.so"; fi
      (cd / && "$work/examples-build/ternvk-simple-static" -m "$model" -p "ROMEO:" -n 32) > "$work/out/simple-static.txt"
      same "$work/out/cli.txt" "$work/out/simple-static.txt"
    fi
    # Several prompts decoded together: each block equals that prompt decoded alone.
    prompts=("ROMEO:" "JULIET:" "To be, or not")
    "$work/examples-build/ternvk-batched" -n 24 "${prompts[@]}" > "$work/out/batched.txt"
    : > "$work/out/solo.txt"
    for i in 0 1 2; do
      "$work/examples-build/ternvk-batched" -n 24 "${prompts[$i]}" | sed "s/^=== 0 ===\$/=== $i ===/" >> "$work/out/solo.txt"
    done
    [ "$(grep -c '^=== ' "$work/out/batched.txt")" = 3 ] || fail "ternvk-batched printed $(cat "$work/out/batched.txt")"
    same "$work/out/solo.txt" "$work/out/batched.txt"
    ;;
  python)
    python=/usr/bin/python3  # Debian's, not one from a virtual environment or pyenv
    # The issue's one-liner prints the continuation of `ternvk run` (its text after the prompt).
    PYTHONPATH=$prefix/lib/python3/dist-packages "$python" -c \
      'import ternvk; print(ternvk.Model().generate("ROMEO:", max_tokens=32, temperature=0))' > "$work/out/python.txt"
    tail -c +7 "$work/out/cli.txt" > "$work/out/cli-continuation.txt"
    same "$work/out/cli-continuation.txt" "$work/out/python.txt"
    PYTHONPATH=$prefix/lib/python3/dist-packages "$python" "$source/tests/package/test_python.py" -v \
      "$prefix" "$work/out/cli.txt"
    ;;
  deb)
    deb_dir=$work/deb
    rm -rf "$deb_dir"
    mkdir -p "$deb_dir"
    (cd "$deb_dir" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$deb_dir" > cpack.log) ||
      fail "cpack failed: $(tail -20 "$deb_dir/cpack.log")"
    deb=$(ls "$deb_dir"/*.deb)
    depends=$(dpkg-deb -f "$deb" Depends)
    for p in libvulkan1 libsentencepiece0 libpcre2-8-0 libstdc++6 libc6; do
      grep -q "\b$p\b" <<< "$depends" || fail "Depends lacks $p: $depends"
    done
    contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
    for f in ./usr/include/ternvk.h ./usr/lib/libternvk.so.0.1.0 ./usr/lib/pkgconfig/ternvk.pc ./usr/bin/ternvk \
             ./usr/lib/cmake/ternvk/ternvkConfig.cmake ./usr/lib/python3/dist-packages/ternvk/__init__.py \
             ./usr/share/ternvk/models/ternvk-shakespeare/model.gguf; do
      grep -qx "$f" <<< "$contents" || fail "the package lacks $f"
    done
    echo "$(basename "$deb"): Depends: $depends"
    ;;
  *) fail "unknown step" ;;
esac
