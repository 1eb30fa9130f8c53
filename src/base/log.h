/*
 * log.h — the server's own messages on stderr, by level: what went wrong (error), what an
 * operator should know (warn), what happened (info, the default), and detail (debug). One line
 * each, as "factum: MESSAGE" or, with log_setup's json, as a JSON object with the time, the
 * level and the message, for a collector. Any thread; a line is written with one write(2), so
 * lines of different threads do not mix.
 */
#ifndef FACTUM_LOG_H
#define FACTUM_LOG_H

#include <stdbool.h>

typedef enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG } log_level;

/* The level below which messages are dropped, and the format (before any thread starts). */
void log_setup(log_level level, bool json);
/* "error", "warn", "info", "debug" -> level; false for another word. */
bool log_level_parse(const char *s, log_level *out);
bool log_enabled(log_level level);
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
