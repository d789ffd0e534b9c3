/* The wall clock that commercial terms are judged by (agreements, the ledger), and the
 * ISO-8601 text it is read and written as. Everything is UTC milliseconds since the Unix
 * epoch; there is no locale and no time zone database.
 *
 * `serve --now ISO8601` freezes the clock for what-if runs and tests: cmx_clock_freeze()
 * sets one process-wide instant that every thread sees at once (an atomic). No request
 * can move it. */
#ifndef CMX_CORE_CLOCK_H
#define CMX_CORE_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMX_CLOCK_DAY_MS INT64_C(86400000)

/* Wall-clock milliseconds since the epoch (UTC), or the frozen instant when
 * cmx_clock_freeze() was called. Thread: any; lock-free. */
uint64_t cmx_clock_now_ms(void);

/* Freezes cmx_clock_now_ms() at unix_ms for the rest of the process (or until the next
 * freeze / unfreeze). Thread: any. */
void cmx_clock_freeze(uint64_t unix_ms);

/* Lets cmx_clock_now_ms() follow the wall clock again. Thread: any. */
void cmx_clock_unfreeze(void);

/* True while the clock is frozen. */
bool cmx_clock_frozen(void);

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1-12, d 1-31; no range
 * check here). Negative before 1970. Howard Hinnant's days_from_civil. */
int64_t cmx_clock_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Parses "YYYY-MM-DD" (that day at 00:00:00.000Z) into *ms. Years 1970-9999; the day must
 * exist (no 2026-02-30). s need not be NUL-terminated. Returns 0 or CMX_EINVAL (*ms
 * untouched). */
int cmx_clock_parse_date(const char *s, size_t len, int64_t *ms);

/* Parses a date as above or a date-time "YYYY-MM-DDTHH:MM[:SS[.fraction]](Z|+HH:MM|-HH:MM)"
 * ('t'/'z' accepted too; the fraction is cut to milliseconds; an offset is applied, so the
 * result is UTC). *is_date (may be NULL) tells which form it was. Years 1970-9999 after
 * the offset. Returns 0 or CMX_EINVAL (*ms untouched). */
int cmx_clock_parse_iso(const char *s, size_t len, int64_t *ms, bool *is_date);

/* Start of the UTC day holding ms (floor to 00:00:00.000Z). */
int64_t cmx_clock_day_start(int64_t ms);

/* Formats the UTC date of ms as "YYYY-MM-DD" into buf (>= 11 bytes). Returns the length. */
size_t cmx_clock_format_date(int64_t ms, char *buf, size_t cap);

/* Formats ms as "YYYY-MM-DDTHH:MM:SSZ", with ".mmm" before the Z when ms is not a whole
 * second, into buf (>= 25 bytes). Returns the length. */
size_t cmx_clock_format_iso(int64_t ms, char *buf, size_t cap);

/* "YYYY-MM-DD" when ms is midnight UTC, else as cmx_clock_format_iso(). */
size_t cmx_clock_format_short(int64_t ms, char *buf, size_t cap);

#endif
