# Indexer end to end: a real multi-layer image (debootstrap + umoci, cached under
# tests/work/indexer/) indexed, extracted and compared with `umoci unpack`. Root needed;
# skips (77) without it or without the Debian mirror.
if(TARGET isorun-index)
	isorun_integration_test(indexer_umoci ${ISORUN_TEST_KIND_DIR}/indexer/test_umoci.sh
		$<TARGET_FILE:isorun-index>)
	set_tests_properties(integration/indexer_umoci PROPERTIES TIMEOUT 900)
endif()
