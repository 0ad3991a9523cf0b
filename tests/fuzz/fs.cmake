# fs fuzz targets (see isorun_fuzz_target in tests/CMakeLists.txt).
isorun_fuzz_target(fuzz_fs_holders ${ISORUN_TEST_KIND_DIR}/fuzz_fs_holders.c isorun_fs)
# The holders file's parser is private to the module.
foreach(t fuzz_fs_holders fuzz_fs_holders_replay)
	if(TARGET ${t})
		target_include_directories(${t} PRIVATE ${CMAKE_SOURCE_DIR}/fs/src)
	endif()
endforeach()
