# Fuzz targets of the agent: its protocol, the tree stream's decoder, and its reading of the
# image's user database (replayed over the committed corpora under CTest).
isorun_fuzz_target(fuzz_agent_frame ${ISORUN_TEST_KIND_DIR}/fuzz_agent_frame.c isorun_agent_proto)
isorun_fuzz_target(fuzz_agent_tree ${ISORUN_TEST_KIND_DIR}/fuzz_agent_tree.c isorun_agent_proto)
isorun_fuzz_target(fuzz_agent_user ${ISORUN_TEST_KIND_DIR}/fuzz_agent_user.c isorun_agent_user)
