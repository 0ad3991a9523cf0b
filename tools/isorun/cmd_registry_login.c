/* isorun login / logout: credentials for a registry in the docker-format auth file. */
#include "verbs.h"

#include "common/cleanup.h"

#include "registry/auth.h"
#include "registry/client.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PASSWORD_MAX 4096

static int cmd_login(int argc, char **argv)
{
	static const struct option opts[] = {
		{"username", required_argument, NULL, 'u'},
		{"password-stdin", no_argument, NULL, 'P'},
		{"authfile", required_argument, NULL, 'a'},
		{"tls-verify", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *user = NULL, *authfile = NULL;
	bool from_stdin = false, no_verify = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "u:h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': user = optarg; break;
		case 'P': from_stdin = true; break;
		case 'a': authfile = optarg; break;
		case 't': no_verify = !strcmp(optarg, "false"); break;
		case 'h':
			printf("usage: isorun login REGISTRY -u USER --password-stdin [--authfile F]\n");
			return 0;
		default: return ISORUN_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !user || !from_stdin) {
		fprintf(stderr, "usage: isorun login REGISTRY -u USER --password-stdin [--authfile F]\n"
				"(passwords are read from standard input only, never from arguments)\n");
		return ISORUN_EXIT_USAGE;
	}
	const char *registry = argv[optind];
	_cleanup_free_ char *pw = calloc(1, PASSWORD_MAX + 1);
	if (!pw)
		return ISORUN_EXIT_ERROR;
	size_t n = fread(pw, 1, PASSWORD_MAX + 1, stdin);
	if (n > PASSWORD_MAX) {
		fprintf(stderr, "isorun: password longer than %d bytes\n", PASSWORD_MAX);
		return ISORUN_EXIT_ERROR;
	}
	while (n && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
		pw[--n] = 0;
	if (!n) {
		fprintf(stderr, "isorun: empty password on standard input\n");
		return ISORUN_EXIT_ERROR;
	}
	/* Check the credentials first, so a typo is not saved. */
	_cleanup_free_ char *creds = malloc(strlen(user) + n + 2);
	if (!creds)
		return ISORUN_EXIT_ERROR;
	sprintf(creds, "%s:%s", user, pw);
	struct reg_options o = {.creds = creds, .tls_no_verify = no_verify, .timeout_s = 60};
	struct reg_client *client;
	int r = reg_client_new(&o, &client);
	if (r == 0) {
		r = reg_client_ping(client, registry);
		reg_client_free(client);
	}
	explicit_bzero(creds, strlen(creds));
	if (r < 0) {
		explicit_bzero(pw, n);
		fprintf(stderr, "isorun: login to %s failed: %s\n", registry,
			r == -EACCES ? "credentials refused" : strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	r = reg_login_store(authfile, registry, user, pw);
	explicit_bzero(pw, n);
	if (r < 0) {
		fprintf(stderr, "isorun: cannot save credentials: %s\n", strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	_cleanup_free_ char *file = reg_authfile_default(authfile);
	printf("Login Succeeded (credentials saved in %s)\n", file ? file : "the auth file");
	return 0;
}
ISORUN_VERB_OPTS(
    "login", cmd_login, "REGISTRY -u USER --password-stdin",
    "save credentials for a registry (docker-format auth file, mode 0600)",
    "  -u, --username USER     the user name\n"
    "  --password-stdin        read the password from standard input (the only way)\n"
    "  --authfile FILE         the auth file (default: $DOCKER_CONFIG/config.json, else\n"
    "                          ~/.docker/config.json)\n"
    "  --tls-verify=false      do not verify the registry's certificate\n");

static int cmd_logout(int argc, char **argv)
{
	const char *authfile = NULL;
	int i = 1;
	if (i + 1 < argc && !strcmp(argv[i], "--authfile")) {
		authfile = argv[i + 1];
		i += 2;
	}
	if (i + 1 != argc) {
		fprintf(stderr, "usage: isorun logout [--authfile F] REGISTRY\n");
		return ISORUN_EXIT_USAGE;
	}
	int r = reg_login_remove(authfile, argv[i]);
	if (r == -ENOENT) {
		fprintf(stderr, "isorun: not logged in to %s\n", argv[i]);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "isorun: logout failed: %s\n", strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	printf("Removed login credentials for %s\n", argv[i]);
	return 0;
}
ISORUN_VERB_OPTS("logout", cmd_logout, "[--authfile F] REGISTRY",
		 "forget the credentials of a registry",
		 "  --authfile FILE    the auth file (as for login)\n");
