/*
 * Logging. One process-wide sink (stderr by default). Thread-safe: each message is
 * formatted into a local buffer and written with one write(2).
 *
 * Never log credentials or Authorization headers: callers pass redacted values.
 */
#pragma once

#include <stdbool.h>

#include <stdarg.h>

enum cm_log_level {
	CM_LOG_ERROR = 0,
	CM_LOG_WARN = 1,
	CM_LOG_INFO = 2,
	CM_LOG_DEBUG = 3,
};

/* Set the maximum level printed (default CM_LOG_WARN, or $ISORUN_LOG=error|warn|info|debug). */
void cm_log_set_level(enum cm_log_level level);
enum cm_log_level cm_log_get_level(void);
/* Set the program name printed as prefix ("isorun-index"). The string is not copied. */
void cm_log_set_ident(const char *ident);
/* On the calling thread only: log every line at debug level (a speculative request's
 * failures matter only if its answer is used; the caller asks again if so). Returns the
 * previous setting, for a caller that demotes only around one call. */
bool cm_log_demote_thread(bool on);
/* How many error lines this process has written so far: a command whose library call failed
 * adds its own line only when the library said nothing (compare before and after). */
unsigned cm_log_errors(void);

void cm_log(enum cm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Log at error level and return `err` (a -errno), for `return cm_log_errno(-EPROTO, "...")`.
 * If `err` is a -errno, ": strerror" is NOT appended; say what was wrong in the message.
 */
int cm_log_ret(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) cm_log(CM_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  cm_log(CM_LOG_WARN, __VA_ARGS__)
#define log_info(...)  cm_log(CM_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (cm_log_get_level() >= CM_LOG_DEBUG)                                            \
			cm_log(CM_LOG_DEBUG, __VA_ARGS__);                                         \
	} while (0)
