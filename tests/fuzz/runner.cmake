# Runner fuzz targets (see isorun_fuzz_target in tests/CMakeLists.txt).
if(TARGET isorun_indexer)
	isorun_fuzz_target(fuzz_image_config ${ISORUN_TEST_KIND_DIR}/fuzz_image_config.c
		isorun_runner isorun_indexer)
endif()
