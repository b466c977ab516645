# What `cmake --install build --prefix P` installs, and the Debian package `cpack -G DEB` makes of it:
#   P/include/ternvk.h                        the C API
#   P/lib/libternvk.so.0 (and libternvk.a)    the library (SONAME libternvk.so.<major>)
#   P/lib/pkgconfig/ternvk.pc                 pkg-config --cflags --libs ternvk
#   P/lib/cmake/ternvk/                       find_package(ternvk) -> ternvk::ternvk (ternvk::ternvk_static)
#   P/bin/ternvk, P/bin/ternvk-chat           the CLI and the desktop app
#   P/share/ternvk/models/ternvk-shakespeare/ the shipped model, found by the apps and the library
#   P/lib/python3/dist-packages/ternvk/       the Python binding (ctypes over libternvk)
#   P/share/doc/ternvk/examples/              examples/*.c and their CMake project
# The library folder is always lib/ (not multiarch): the Python binding finds the library three
# folders above itself, and the library finds the model in ../share.
include(CMakePackageConfigHelpers)

# The header's version macros are the library's version: keep them equal to project(VERSION).
file(READ ${PROJECT_SOURCE_DIR}/include/ternvk.h ternvk_header)
foreach(part MAJOR MINOR PATCH)
  string(REGEX MATCH "#define TERNVK_VERSION_${part} ([0-9]+)" _ "${ternvk_header}")
  if(NOT CMAKE_MATCH_1 STREQUAL PROJECT_VERSION_${part})
    message(FATAL_ERROR "include/ternvk.h: TERNVK_VERSION_${part} is ${CMAKE_MATCH_1}, project() says "
                        "${PROJECT_VERSION_${part}}")
  endif()
endforeach()

set(ternvk_library_targets ternvk_shared)
if(TARGET ternvk_static)
  list(APPEND ternvk_library_targets ternvk_static)
endif()
install(FILES include/ternvk.h DESTINATION include)
install(TARGETS ${ternvk_library_targets} EXPORT ternvkTargets
        LIBRARY DESTINATION lib ARCHIVE DESTINATION lib INCLUDES DESTINATION include)
install(EXPORT ternvkTargets NAMESPACE ternvk:: DESTINATION lib/cmake/ternvk FILE ternvkTargets.cmake)
configure_package_config_file(cmake/ternvkConfig.cmake.in ${PROJECT_BINARY_DIR}/ternvkConfig.cmake
                              INSTALL_DESTINATION lib/cmake/ternvk)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ternvkConfigVersion.cmake COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ternvkConfig.cmake ${PROJECT_BINARY_DIR}/ternvkConfigVersion.cmake
        DESTINATION lib/cmake/ternvk)
configure_file(cmake/ternvk.pc.in ${PROJECT_BINARY_DIR}/ternvk.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/ternvk.pc DESTINATION lib/pkgconfig)

install(TARGETS ternvk_cli RUNTIME DESTINATION bin)
if(TARGET ternvk-chat)
  install(TARGETS ternvk-chat RUNTIME DESTINATION bin)
endif()
install(FILES models/ternvk-shakespeare/model.gguf models/ternvk-shakespeare/README.md
        DESTINATION share/ternvk/models/ternvk-shakespeare)
install(DIRECTORY python/ternvk DESTINATION lib/python3/dist-packages PATTERN __pycache__ EXCLUDE)
install(FILES examples/simple.c examples/batched.c examples/CMakeLists.txt DESTINATION share/doc/ternvk/examples)
install(FILES LICENSE README.md DESTINATION share/doc/ternvk)

# cpack -G DEB (run in the build folder): Depends are computed from the installed binaries by
# dpkg-shlibdeps (libvulkan1, libsentencepiece0, libpcre2-8-0, libcpp-httplib0.11, libglfw3, ...).
set(CPACK_PACKAGE_NAME ternvk)
set(CPACK_PACKAGE_VENDOR "ternvk")
set(CPACK_PACKAGE_CONTACT "ternvk maintainers <ternvk@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "BitNet b1.58 ternary LLMs on any Vulkan GPU: library, C API, CLI, Python binding")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
# A Vulkan driver to run on (Mesa's lavapipe works without a GPU), python3 for the binding, the
# fonts ternvk-chat draws with.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "mesa-vulkan-drivers | vulkan-icd, python3, fonts-dejavu-core")
set(CPACK_STRIP_FILES ON)
include(CPack)
