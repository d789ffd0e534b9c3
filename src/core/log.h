/* Diagnostic log on stderr (the access log is separate: src/obs/accesslog.h). Lines are
 * "2026-11-26T07:09:03.123Z level message"; each line is written with one write(2) so
 * that threads never interleave. Debug lines are built in and off by default. */
#ifndef CMX_CORE_LOG_H
#define CMX_CORE_LOG_H

enum cmx_log_level { CMX_LOG_DEBUG, CMX_LOG_INFO, CMX_LOG_WARN, CMX_LOG_ERROR };

/* Lines below this level are dropped. Default CMX_LOG_INFO; CLOUDMUX_LOG=debug lowers it. */
extern enum cmx_log_level cmx_log_min;

/* Writes one line. Never logs secrets: callers pass names, not values. Thread: any. */
void cmx_log(enum cmx_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cmx_debug(...)                                                                             \
    do {                                                                                           \
        if (cmx_log_min <= CMX_LOG_DEBUG)                                                          \
            cmx_log(CMX_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/* Formats the current UTC time as ISO-8601 with milliseconds into buf (>= 32 bytes). */
void cmx_time_iso(char *buf, unsigned long long unix_ms);

/* Wall-clock milliseconds since the epoch. */
unsigned long long cmx_time_unix_ms(void);

#endif
