# The benchmark harness in its quick form (minimal image, loopback, one repetition), so that
# bench/ cannot rot: it builds the image from Debian packages on first use (cached in
# bench/work/), runs a real registry on loopback and fails when any measured step fails.
# It measures every isorun verb this build has. Skips (77) without root or Debian mirror.
isorun_integration_test(bench_quick ${CMAKE_SOURCE_DIR}/bench/run.sh --quick)
set_tests_properties(integration/bench_quick PROPERTIES TIMEOUT 600 RUN_SERIAL TRUE LABELS "integration;bench")

# The command line's own contract (help, usage errors and their exit statuses); no root.
if(TARGET isorun)
	isorun_integration_test(tools_cli ${ISORUN_TEST_KIND_DIR}/tools/test_cli.sh
		$<TARGET_FILE:isorun> $<$<TARGET_EXISTS:isorun-index>:$<TARGET_FILE:isorun-index>>)
endif()
