# fs end to end (tests/integration/fs/): a real docker-registry on loopback, generated images
# pushed with skopeo and indexed with `isorun-index build --push`, real FUSE mounts compared
# with `umoci unpack`. Root and /dev/fuse needed; each test skips (77) without them.
if(TARGET isorun AND TARGET isorun-index)
	foreach(t mount lazy faults concurrency crash)
		isorun_integration_test(fs_${t} ${ISORUN_TEST_KIND_DIR}/fs/test_${t}.sh)
		set_tests_properties(integration/fs_${t} PROPERTIES TIMEOUT 600)
	endforeach()
endif()
