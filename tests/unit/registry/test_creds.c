/* Credential lookup from auth files and credential helpers, login/logout file edits.
 * Every test works in its own temporary directory with its own environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "registry/auth.h"

static char tmpdir[] = "/tmp/isorun-test-creds.XXXXXX";

static void write_file(const char *name, const char *content, mode_t mode)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	chmod(p, mode);
}

static char *path(const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", tmpdir, name);
	return p[k];
}

static int setup(void **state)
{
	if (!mkdtemp(tmpdir))
		return -1;
	unsetenv("REGISTRY_AUTH_FILE");
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("DOCKER_CONFIG");
	setenv("HOME", tmpdir, 1);
	return 0;
}

static int teardown(void **state)
{
	cm_rm_rf_at(AT_FDCWD, tmpdir);
	return 0;
}

/* base64("alice:s3cr:et") = YWxpY2U6czNjcjpldA== */
static void test_auths_auth(void **state)
{
	write_file(
	    "a.json",
	    "{\"auths\": {\"https://index.docker.io/v1/\": {\"auth\": \"YWxpY2U6czNjcjpldA==\"},"
	    " \"ghcr.io\": {\"auth\": \"Ym9iOnB3\"},"
	    " \"ghcr.io/org/special\": {\"auth\": \"Y2Fyb2w6cHcy\"}}}",
	    0600);
	struct reg_creds c;
	assert_int_equal(reg_creds_lookup(NULL, path("a.json"), "docker.io", "library/x", &c), 1);
	assert_string_equal(c.username, "alice");
	assert_string_equal(c.password, "s3cr:et"); /* only the first ':' splits */
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup(NULL, path("a.json"), "ghcr.io", "org/other", &c), 1);
	assert_string_equal(c.username, "bob");
	reg_creds_fini(&c);
	/* podman's repository-scoped keys: the longest match wins */
	assert_int_equal(reg_creds_lookup(NULL, path("a.json"), "ghcr.io", "org/special/sub", &c),
			 1);
	assert_string_equal(c.username, "carol");
	assert_string_equal(c.password, "pw2");
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup(NULL, path("a.json"), "quay.io", "x", &c), 0);
	assert_null(c.username);
}

static void test_identity_token_and_explicit(void **state)
{
	write_file("i.json",
		   "{\"auths\": {\"reg.example:5000\": {\"identitytoken\": \"refresh-xyz\"}}}",
		   0600);
	struct reg_creds c;
	assert_int_equal(reg_creds_lookup(NULL, path("i.json"), "reg.example:5000", NULL, &c), 1);
	assert_null(c.username);
	assert_string_equal(c.identity_token, "refresh-xyz");
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup("u:p:q", path("i.json"), "reg.example:5000", NULL, &c),
			 1);
	assert_string_equal(c.username, "u");
	assert_string_equal(c.password, "p:q");
	assert_string_equal(c.source, "--creds");
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup("nocolon", NULL, "x", NULL, &c), -EINVAL);
}

static void test_malformed(void **state)
{
	struct reg_creds c;
	write_file("m1.json", "{\"auths\": {\"h\": {\"auth\": \"!!notbase64\"}}}", 0600);
	assert_int_equal(reg_creds_lookup(NULL, path("m1.json"), "h", NULL, &c), -EPROTO);
	write_file("m2.json", "{\"auths\": {\"h\": {\"auth\": \"bm9jb2xvbg==\"}}}",
		   0600); /* "nocolon" */
	assert_int_equal(reg_creds_lookup(NULL, path("m2.json"), "h", NULL, &c), -EPROTO);
	write_file("m3.json", "[1,2]", 0600);
	assert_int_equal(reg_creds_lookup(NULL, path("m3.json"), "h", NULL, &c), -EPROTO);
	assert_int_equal(reg_creds_lookup(NULL, path("absent.json"), "h", NULL, &c), 0);
}

static void test_search_order(void **state)
{
	char d[512];
	/* ~/.docker/config.json, then $DOCKER_CONFIG, $XDG_RUNTIME_DIR, $REGISTRY_AUTH_FILE */
	snprintf(d, sizeof(d), "%s/.docker", tmpdir);
	mkdir(d, 0700);
	write_file(".docker/config.json", "{\"auths\": {\"h\": {\"auth\": \"aG9tZTpw\"}}}", 0600);
	struct reg_creds c;
	assert_int_equal(reg_creds_lookup(NULL, NULL, "h", NULL, &c), 1);
	assert_string_equal(c.username, "home");
	reg_creds_fini(&c);
	mkdir(path("dc"), 0700);
	write_file("dc/config.json", "{\"auths\": {\"h\": {\"auth\": \"ZGM6cA==\"}}}", 0600);
	setenv("DOCKER_CONFIG", path("dc"), 1);
	assert_int_equal(reg_creds_lookup(NULL, NULL, "h", NULL, &c), 1);
	assert_string_equal(c.username, "dc");
	reg_creds_fini(&c);
	mkdir(path("xdg"), 0700);
	mkdir(path("xdg/containers"), 0700);
	write_file("xdg/containers/auth.json", "{\"auths\": {\"h\": {\"auth\": \"eGRnOnA=\"}}}",
		   0600);
	setenv("XDG_RUNTIME_DIR", path("xdg"), 1);
	assert_int_equal(reg_creds_lookup(NULL, NULL, "h", NULL, &c), 1);
	assert_string_equal(c.username, "xdg");
	reg_creds_fini(&c);
	/* a file without an entry for the host does not stop the search */
	assert_int_equal(reg_creds_lookup(NULL, NULL, "other", NULL, &c), 0);
	write_file("raf.json", "{\"auths\": {\"h\": {\"auth\": \"cmFmOnA=\"}}}", 0600);
	setenv("REGISTRY_AUTH_FILE", path("raf.json"), 1);
	assert_int_equal(reg_creds_lookup(NULL, NULL, "h", NULL, &c), 1);
	assert_string_equal(c.username, "raf");
	reg_creds_fini(&c);
	unsetenv("REGISTRY_AUTH_FILE");
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("DOCKER_CONFIG");
}

static void test_helpers(void **state)
{
	/* a fake docker-credential-fake on $PATH, answering per the helper protocol */
	mkdir(path("bin"), 0755);
	char script[2048];
	snprintf(script, sizeof(script),
		 "#!/bin/sh\n"
		 "[ \"$1\" = get ] || exit 3\n"
		 "read -r host\n"
		 "echo \"$host\" >>%s/helper.log\n"
		 "case \"$host\" in\n"
		 "  reg.example) echo "
		 "'{\"ServerURL\":\"reg.example\",\"Username\":\"hu\",\"Secret\":\"hs\"}' ;;\n"
		 "  tok.example) echo '{\"Username\":\"<token>\",\"Secret\":\"idt\"}' ;;\n"
		 "  broken.example) echo 'not json' ;;\n"
		 "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
		 "esac\n",
		 tmpdir);
	write_file("bin/docker-credential-fake", script, 0755);
	char pathenv[4096];
	snprintf(pathenv, sizeof(pathenv), "%s:%s", path("bin"), getenv("PATH"));
	setenv("PATH", pathenv, 1);

	write_file("h.json",
		   "{\"credHelpers\": {\"reg.example\": \"fake\", \"tok.example\": \"fake\","
		   " \"bad.example\": \"../../bin/sh\"}, \"auths\": {\"reg.example\": {\"auth\": "
		   "\"eDp5\"}}}",
		   0600);
	struct reg_creds c;
	/* credHelpers wins over auths */
	assert_int_equal(reg_creds_lookup(NULL, path("h.json"), "reg.example", NULL, &c), 1);
	assert_string_equal(c.username, "hu");
	assert_string_equal(c.password, "hs");
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup(NULL, path("h.json"), "tok.example", NULL, &c), 1);
	assert_null(c.username);
	assert_string_equal(c.identity_token, "idt");
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup(NULL, path("h.json"), "bad.example", NULL, &c), -EPROTO);

	write_file("s.json", "{\"credsStore\": \"fake\", \"auths\": {\"elsewhere\": {}}}", 0600);
	assert_int_equal(reg_creds_lookup(NULL, path("s.json"), "reg.example", NULL, &c), 1);
	assert_string_equal(c.username, "hu");
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup(NULL, path("s.json"), "unknown.example", NULL, &c), 0);
	assert_int_equal(reg_creds_lookup(NULL, path("s.json"), "broken.example", NULL, &c),
			 -EPROTO);
	write_file("n.json", "{\"credsStore\": \"nonexistent-helper\"}", 0600);
	assert_true(reg_creds_lookup(NULL, path("n.json"), "reg.example", NULL, &c) < 0);
}

static void test_login_logout(void **state)
{
	char *f = path("cfg/config.json");
	/* an existing file keeps its other fields and entries */
	mkdir(path("cfg"), 0700);
	write_file("cfg/config.json",
		   "{\"auths\": {\"other\": {\"auth\": \"bzpw\"}}, \"psFormat\": \"x\"}", 0644);
	assert_int_equal(reg_login_store(f, "reg.example:5000", "user", "p@ss:word"), 0);
	struct stat st;
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	struct reg_creds c;
	assert_int_equal(reg_creds_lookup(NULL, f, "reg.example:5000", NULL, &c), 1);
	assert_string_equal(c.username, "user");
	assert_string_equal(c.password, "p@ss:word");
	reg_creds_fini(&c);
	assert_int_equal(reg_creds_lookup(NULL, f, "other", NULL, &c), 1);
	reg_creds_fini(&c);
	struct cm_buf b;
	cm_buf_init(&b, 1 << 20);
	assert_int_equal(cm_read_file(AT_FDCWD, f, &b), 0);
	assert_non_null(strstr((char *)b.data, "psFormat"));
	assert_null(strstr((char *)b.data, "p@ss"));
	cm_buf_fini(&b);
	/* Docker Hub aliases collapse to docker.io */
	assert_int_equal(reg_login_store(f, "index.docker.io", "hub", "pw"), 0);
	assert_int_equal(reg_creds_lookup(NULL, f, "docker.io", NULL, &c), 1);
	assert_string_equal(c.username, "hub");
	reg_creds_fini(&c);

	assert_int_equal(reg_login_remove(f, "reg.example:5000"), 0);
	assert_int_equal(reg_creds_lookup(NULL, f, "reg.example:5000", NULL, &c), 0);
	assert_int_equal(reg_login_remove(f, "reg.example:5000"), -ENOENT);
	assert_int_equal(reg_creds_lookup(NULL, f, "other", NULL, &c), 1);
	reg_creds_fini(&c);
	assert_int_equal(reg_login_store(f, "h", "bad:user", "pw"), -EINVAL);
	/* a malformed file is never overwritten */
	write_file("cfg/config.json", "{broken", 0600);
	assert_int_equal(reg_login_store(f, "h", "u", "pw"), -EPROTO);
	/* default location: $DOCKER_CONFIG, else ~/.docker */
	char *d = reg_authfile_default(NULL);
	char want[600];
	snprintf(want, sizeof(want), "%s/.docker/config.json", tmpdir);
	assert_string_equal(d, want);
	free(d);
	/* a new file in a new directory: created 0700/0600 */
	assert_int_equal(reg_login_store(NULL, "h", "u", "pw"), 0);
	assert_int_equal(stat(want, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auths_auth), cmocka_unit_test(test_identity_token_and_explicit),
	    cmocka_unit_test(test_malformed),  cmocka_unit_test(test_search_order),
	    cmocka_unit_test(test_helpers),    cmocka_unit_test(test_login_logout),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
