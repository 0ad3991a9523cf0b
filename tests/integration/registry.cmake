# Registry integration tests: a real docker-registry on loopback (tests/fixtures/registry.sh),
# images built by the test and pushed with skopeo, read back with reg-tool.
add_executable(reg-tool ${ISORUN_TEST_KIND_DIR}/registry/reg_tool.c)
target_link_libraries(reg-tool PRIVATE isorun_registry)

foreach(t basic auth faults push_referrers)
	isorun_integration_test(registry_${t}
		${ISORUN_TEST_KIND_DIR}/registry/test_${t}.sh $<TARGET_FILE:reg-tool>)
endforeach()
