# fs end to end (tests/integration/fs/): a real docker-registry on loopback, generated images
# pushed with skopeo and indexed with `isorun-index build --push`, real FUSE mounts compared
# with `umoci unpack`. Root and /dev/fuse needed; each test skips (77) without them.
if(TARGET isorun AND TARGET isorun-index)
	foreach(t mount lazy faults concurrency crash)
		isorun_integration_test(fs_${t} ${ISORUN_TEST_KIND_DIR}/fs/test_${t}.sh)
		set_tests_properties(integration/fs_${t} PROPERTIES TIMEOUT 600)
	endforeach()
	# test_mount drops the host's page cache; test_lazy counts the FUSE reads of pages
	# pushed into it: never at the same time.
	set_tests_properties(integration/fs_mount integration/fs_lazy PROPERTIES
		RESOURCE_LOCK host_page_cache)
endif()
