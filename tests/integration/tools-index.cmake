# End-to-end tests of the command-line tools against a real registry on loopback.
isorun_integration_test(tools_index_registry
	${ISORUN_TEST_KIND_DIR}/tools/test_index_registry.sh
	$<TARGET_FILE:isorun-index> $<TARGET_FILE:isorun>)
