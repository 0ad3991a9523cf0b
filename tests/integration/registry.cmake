# Registry integration tests: a real docker-registry on loopback (tests/fixtures/registry.sh),
# images built by the test and pushed with skopeo, read back with reg-tool.
add_executable(reg-tool ${ISORUN_TEST_KIND_DIR}/registry/reg_tool.c)
target_link_libraries(reg-tool PRIVATE isorun_registry)

foreach(t basic auth faults push_referrers)
	isorun_integration_test(registry_${t}
		${ISORUN_TEST_KIND_DIR}/registry/test_${t}.sh $<TARGET_FILE:reg-tool>)
endforeach()

# The registry idx_source (indexer/src/source_registry.c, owned by the registry module) built
# straight from its source, so it is tested even when the indexer module is not built.
add_executable(source-check ${ISORUN_TEST_KIND_DIR}/registry/source_check.c
	${CMAKE_SOURCE_DIR}/indexer/src/source_registry.c)
target_include_directories(source-check PRIVATE ${CMAKE_SOURCE_DIR}/indexer/include)
target_link_libraries(source-check PRIVATE isorun_registry)
