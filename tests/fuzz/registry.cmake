# Registry fuzz targets (see isorun_fuzz_target in tests/CMakeLists.txt).
isorun_fuzz_target(fuzz_reg_ref ${ISORUN_TEST_KIND_DIR}/fuzz_reg_ref.c isorun_registry)
isorun_fuzz_target(fuzz_reg_challenge ${ISORUN_TEST_KIND_DIR}/fuzz_reg_challenge.c isorun_registry)
isorun_fuzz_target(fuzz_reg_manifest ${ISORUN_TEST_KIND_DIR}/fuzz_reg_manifest.c isorun_registry)
isorun_fuzz_target(fuzz_reg_multipart ${ISORUN_TEST_KIND_DIR}/fuzz_reg_multipart.c isorun_registry)
