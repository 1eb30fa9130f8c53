/*
 * log.c — leveled lines on stderr (log.h). The level and the format are set once at start; a
 * line is built in a stack buffer and written with one write(2) (stderr may be a pipe to
 * journald or a file that logrotate moves, which O_APPEND keeps whole).
 */
#include "log.h"

#include "base.h"
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static log_level threshold = LOG_LEVEL_INFO;
static bool as_json;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(log_level level, bool json) {
    threshold = level;
    as_json = json;
}

bool log_level_parse(const char *s, log_level *out) {
    for (size_t i = 0; i < ARRAY_LEN(level_names); i++)
        if (!strcmp(s, level_names[i])) {
            *out = (log_level)i;
            return true;
        }
    return false;
}

bool log_enabled(log_level level) { return level <= threshold; }

void log_msg(log_level level, const char *fmt, ...) {
    if (level > threshold) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : MIN((size_t)n, sizeof msg - 1);
    while (len && msg[len - 1] == '\n')
        len--;
    buf_t line = {0};
    if (as_json) {
        int64_t us = clock_realtime_us();
        time_t t = (time_t)(us / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        char when[40];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        buf_printf(&line, "{\"time\":\"%s.%06lldZ\",\"level\":\"%s\",\"msg\":", when, (long long)(us % 1000000),
                   level_names[level]);
        json_escape_lossy(&line, msg, len);
        buf_append(&line, "}\n", 2);
    } else {
        buf_printf(&line, "factum: %.*s\n", (int)len, msg);
    }
    if (line.ptr) {
        ssize_t w = write(2, line.ptr, line.len);
        (void)w;
    }
    buf_free(&line);
}
