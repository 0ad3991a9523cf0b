# Indexer fuzz targets (libFuzzer under ISORUN_FUZZ; otherwise corpus replays under CTest).
# Both use the private indexer headers and idx_testlib (tests/unit/indexer) for tl_walk.
if(TARGET idx_testlib)
	foreach(t fuzz_idx_layer fuzz_idx_reader)
		isorun_fuzz_target(${t} ${ISORUN_TEST_KIND_DIR}/${t}.c idx_testlib isorun_indexer)
		if(ISORUN_FUZZ)
			target_include_directories(${t} PRIVATE ${CMAKE_SOURCE_DIR}/indexer/src)
		else()
			target_include_directories(${t}_replay PRIVATE ${CMAKE_SOURCE_DIR}/indexer/src)
		endif()
	endforeach()
endif()
