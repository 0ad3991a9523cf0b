#include "common/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = -1;
static _Thread_local bool demoted;
static _Atomic unsigned errors_said; /* error lines written (cm_log_errors) */
static const char *log_ident = "isorun";

static int level_from_env(void)
{
	const char *e = getenv("ISORUN_LOG");
	if (!e)
		return CM_LOG_WARN;
	if (!strcmp(e, "error"))
		return CM_LOG_ERROR;
	if (!strcmp(e, "info"))
		return CM_LOG_INFO;
	if (!strcmp(e, "debug"))
		return CM_LOG_DEBUG;
	return CM_LOG_WARN;
}

void cm_log_set_level(enum cm_log_level level)
{
	atomic_store(&log_level, (int)level);
}

enum cm_log_level cm_log_get_level(void)
{
	int l = atomic_load(&log_level);
	if (l < 0) {
		l = level_from_env();
		atomic_store(&log_level, l);
	}
	return (enum cm_log_level)l;
}

void cm_log_set_ident(const char *ident)
{
	log_ident = ident;
}

unsigned cm_log_errors(void)
{
	return errors_said;
}

bool cm_log_demote_thread(bool on)
{
	bool was = demoted;
	demoted = on;
	return was;
}

__attribute__((format(printf, 2, 0))) static void vlog(enum cm_log_level level, const char *fmt,
							      va_list ap)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	char buf[4096];
	int n;

	if (demoted)
		level = CM_LOG_DEBUG;
	if ((int)level > (int)cm_log_get_level())
		return;
	if (level == CM_LOG_ERROR)
		errors_said++;
	if (level == CM_LOG_DEBUG) {
		/* Debug lines carry the monotonic clock (comparable across processes), so
		 * `--debug` shows where the time of a command goes. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		n = snprintf(buf, sizeof(buf), "%s: %s: [%lld.%06ld] ", log_ident, names[level],
			     (long long)ts.tv_sec, ts.tv_nsec / 1000);
	} else {
		n = snprintf(buf, sizeof(buf), "%s: %s: ", log_ident, names[level]);
	}
	if (n < 0 || (size_t)n >= sizeof(buf))
		return;
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n >= sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, (size_t)n);
}

void cm_log(enum cm_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

int cm_log_ret(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(CM_LOG_ERROR, fmt, ap);
	va_end(ap);
	return err;
}
