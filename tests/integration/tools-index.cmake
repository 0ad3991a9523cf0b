# Only with the indexer (isorun-index) and, for run, the fs and runner modules built.
if(NOT TARGET isorun-index)
	return()
endif()
# End-to-end tests of the command-line tools against a real registry on loopback.
isorun_integration_test(tools_index_registry
	${ISORUN_TEST_KIND_DIR}/tools/test_index_registry.sh
	$<TARGET_FILE:isorun-index> $<TARGET_FILE:isorun>)

if(NOT TARGET isorun_fs OR NOT TARGET isorun_runner)
	return()
endif()
# isorun run/create REF end to end: registry image with a whiteout layer, index artifact
# pushed by isorun-index, a host with an empty store pulls the index only and runs lazily.
isorun_integration_test(tools_run_registry
	${ISORUN_TEST_KIND_DIR}/tools/test_run_registry.sh
	$<TARGET_FILE:isorun-index> $<TARGET_FILE:isorun>)
