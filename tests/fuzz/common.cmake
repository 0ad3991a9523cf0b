# Common fuzz targets (see isorun_fuzz_target in tests/CMakeLists.txt).
isorun_fuzz_target(fuzz_common_base64 ${ISORUN_TEST_KIND_DIR}/fuzz_common_base64.c isorun_common)
