# Turns one .spv file into a C++ array named spv_<NAME> (SPIR-V words are little-endian,
# so the four bytes of each word are reversed into one hex literal).
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" len)
math(EXPR words "${len} / 8")
string(REGEX REPLACE "([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])"
       "0x\\4\\3\\2\\1," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f]+,){8})" "\\1\n" body "${body}")
file(WRITE ${OUTPUT} "#include <cstddef>\n#include <cstdint>\nnamespace ternvk::shaders {\nextern const uint32_t spv_${NAME}[] = {\n${body}};\nextern const size_t spv_${NAME}_words = ${words};\n}\n")
