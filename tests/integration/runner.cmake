# End-to-end tests of the runner: real sandboxes on a busybox rootfs (root needed; skipped
# with exit 77 otherwise). sandbox-probe is a static helper copied into the test rootfs.
set(probe_out ${CMAKE_BINARY_DIR}/tests/integration/sandbox-probe)
find_program(MUSL_GCC musl-gcc)
if(MUSL_GCC)
	set(probe_cc ${MUSL_GCC})
else()
	set(probe_cc ${CMAKE_C_COMPILER})
endif()
add_custom_command(OUTPUT ${probe_out}
	COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/tests/integration
	COMMAND ${probe_cc} -static -O2 -Wall -o ${probe_out}
		${ISORUN_TEST_KIND_DIR}/runner/probe.c
	DEPENDS ${ISORUN_TEST_KIND_DIR}/runner/probe.c
	COMMENT "Building the static sandbox probe" VERBATIM)
add_custom_target(sandbox-probe ALL DEPENDS ${probe_out})

add_executable(runner-image-ops ${ISORUN_TEST_KIND_DIR}/runner/image_ops.c)
target_link_libraries(runner-image-ops PRIVATE isorun_runner)
set_target_properties(runner-image-ops PROPERTIES
	RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/integration)

foreach(t sandbox_lifecycle sandbox_isolation sandbox_many sandbox_image_ops sandbox_fuse_lower
		sandbox_pool)
	isorun_integration_test(runner_${t} bash ${ISORUN_TEST_KIND_DIR}/runner/${t}.sh)
	set_tests_properties(integration/runner_${t} PROPERTIES RUN_SERIAL TRUE)
endforeach()
