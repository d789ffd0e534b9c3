/* Rate limits: GCRA buckets (requests or tokens per period) taken all-or-nothing, behind
 * one interface with two backends:
 *
 *   memory  one table per process, shared by every worker thread (striped mutexes,
 *           drained buckets expire); callbacks run synchronously, inside cmx_limits_take().
 *   redis   one hiredis connection per worker loop; one atomic Lua script decides for all
 *           instances that share the Redis, with Redis's own clock (TIME). Callbacks run on
 *           the worker loop when the reply arrives, or synchronously when the connection is
 *           down (the on_error policy answers at once).
 *
 * Lifecycle: cmx_limits_new() once per process (main thread) -> cmx_limits_client_new() on
 * each worker thread for its loop -> cmx_limits_take()/cmx_limits_settle() per request ->
 * cmx_limits_client_close() on the worker -> cmx_limits_free() after every client closed.
 * Keep one struct cmx_limits across config reloads when the limits: value is unchanged,
 * or the memory backend starts from full buckets again.
 *
 * Semantics (docs/limits.md): a bucket with limit N per period P allows a burst of N, then
 * refills continuously at N/P (one request every P/N). A take charges cost to every bucket
 * given or to none. Settlement adds a signed delta (actual - reserved tokens) that may
 * refund; it never refuses and may push a bucket into debt (later takes wait longer).
 * All arithmetic is integer microseconds. */
#ifndef CMX_LIMITS_LIMITS_H
#define CMX_LIMITS_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"

#define CMX_LIMITS_MAX_BUCKETS 8   /* buckets per take or settle */
#define CMX_LIMITS_KEY_MAX     128 /* bytes of a bucket key */
#define CMX_LIMITS_HOST_MAX    255 /* bytes of a Redis host name */
#define CMX_LIMITS_SECRET_MAX  255 /* bytes of a Redis user name or password */

/* Level scale: a bucket's capacity limit * (period_us / gcd(limit, period_us)) must stay
 * at or below CMX_LIMITS_MAX_CAPACITY so that the Redis script (Lua 5.1 numbers are
 * doubles, exact to 2^53) computes exactly. Per-minute limits up to ~37 million always fit. */
#define CMX_LIMITS_MAX_CAPACITY (INT64_C(1) << 51)
#define CMX_LIMITS_MAX_LEVEL    (INT64_C(1) << 52) /* debt is clamped here */

enum cmx_limits_backend { CMX_LIMITS_MEMORY, CMX_LIMITS_REDIS };

/* What a take answers when the backend cannot decide (Redis down, timed out, table full). */
enum cmx_limits_on_error { CMX_LIMITS_FAIL_OPEN, CMX_LIMITS_FAIL_CLOSED };

/* What a bucket counts; picks the -requests or -tokens headers. A QUOTA bucket is a budget:
 * it never refills (the caller names the period in its key, so a new period is a new
 * bucket), starts at init when absent, is dropped ttl_us after its last change, and gives
 * no headers. */
enum cmx_limits_unit { CMX_LIMITS_REQUESTS, CMX_LIMITS_TOKENS, CMX_LIMITS_QUOTA };

/* The `limits:` setting. Fill with cmx_limits_config_init() then one of the parsers. */
struct cmx_limits_config {
    enum cmx_limits_backend backend;          /* memory (default) or redis */
    enum cmx_limits_on_error on_error;        /* default fail_open */
    char host[CMX_LIMITS_HOST_MAX + 1];       /* redis: host name, IPv4 or IPv6 (no brackets) */
    int port;                                 /* redis: 1-65535, default 6379 */
    int db;                                   /* redis: SELECTed database, default 0 */
    char user[CMX_LIMITS_SECRET_MAX + 1];     /* redis: ACL user ("" = none); secret-ish */
    char password[CMX_LIMITS_SECRET_MAX + 1]; /* redis: AUTH password ("" = none); secret */
    int timeout_ms;                /* redis: a reply later than this counts as an error; 500 */
    int backoff_min_ms;            /* redis: first reconnect delay; 50 */
    int backoff_max_ms;            /* redis: reconnect delay cap (doubles up to it); 2000 */
    size_t max_entries;            /* memory: live buckets held at most; 1 << 20 */
    int64_t (*clock_us)(void *ud); /* memory: time source (tests); NULL = CLOCK_MONOTONIC */
    void *clock_ud;                /* passed to clock_us */
    char key_prefix[32];           /* redis: prefix of every key; "cmx:rl:" */
};

/* Sets the defaults above (memory, fail_open). Never fails. */
void cmx_limits_config_init(struct cmx_limits_config *c);

/* Parses the scalar form of `limits:`: "memory" or
 * "redis://[[user]:password@]host[:port][/db]" (IPv6 host in brackets). Only the backend and
 * address fields of c change. On error returns CMX_ECONFIG and writes a message to err
 * (cap bytes, NUL-terminated, may be NULL) that never contains the password or user. */
int cmx_limits_config_parse(struct cmx_limits_config *c, const char *s, size_t len, char *err,
                            size_t errcap);

/* Parses the map form `{url: ..., on_error: fail_open|fail_closed, timeout_ms: N}`: n
 * key/value pairs (values not NUL-terminated, lengths in vlens). url is required; unknown
 * or repeated keys are errors. Same returns and message rules as cmx_limits_config_parse. */
int cmx_limits_config_parse_map(struct cmx_limits_config *c, const char *const *keys,
                                const char *const *vals, const size_t *vlens, size_t n, char *err,
                                size_t errcap);

/* Describes c without secrets ("memory", "redis://host:6379/0 (fail_open)") into buf;
 * returns the length (truncated to cap - 1). */
size_t cmx_limits_config_describe(const struct cmx_limits_config *c, char *buf, size_t cap);

/* One bucket of a take or settle. The key names the bucket (e.g. "key:42:rpm",
 * "tenant:acme:tpm"): never a secret, 1..CMX_LIMITS_KEY_MAX bytes, copied by the call. The
 * same key with another limit or period is another bucket (a config change starts fresh). */
struct cmx_limits_bucket {
    const char *key;           /* identity, NUL-terminated */
    enum cmx_limits_unit unit; /* requests or tokens (headers only) */
    int64_t limit;             /* N per period, >= 1 */
    int64_t period_us;         /* the period, >= 1 (60000000 for "per minute") */
    int64_t cost;              /* take: units to charge, >= 0; settle: signed delta */
    int64_t init;              /* QUOTA: level of an absent bucket (units already used) */
    int64_t ttl_us;            /* QUOTA: kept this long after its last change, >= 1 */
};

/* One bucket's answer, in OpenAI's header semantics. */
struct cmx_limits_state {
    enum cmx_limits_unit unit; /* copied from the bucket */
    int64_t limit;             /* copied from the bucket */
    int64_t remaining;         /* units that could be taken right now, after this take */
    int64_t reset_us;          /* time until the bucket is full again */
    int64_t retry_after_us;    /* 0 when this cost fits; else the wait until it would; -1 never
                                  (cost > limit) */
    bool allowed;              /* this bucket alone would accept the cost */
};

enum cmx_limits_verdict {
    CMX_LIMITS_ALLOW,       /* every bucket accepted; all were charged */
    CMX_LIMITS_DENY,        /* some bucket refused; none was charged */
    CMX_LIMITS_ERROR_ALLOW, /* backend failed, on_error fail_open: let it through */
    CMX_LIMITS_ERROR_DENY,  /* backend failed, on_error fail_closed: refuse */
};

struct cmx_limits_result {
    enum cmx_limits_verdict verdict; /* see above */
    bool allowed;                    /* ALLOW or ERROR_ALLOW */
    bool too_large;                  /* DENY because a cost exceeds its limit: retrying is futile */
    int error;                       /* ERROR_*: CMX_ECONNECT, CMX_ETIMEOUT, CMX_ENOMEM,
                                        CMX_EUPSTREAM (bad reply) or CMX_ECANCELED (closing) */
    int64_t retry_after_us;          /* DENY: longest wait of a refusing bucket (0 if too_large);
                                        ERROR_DENY: 1 s */
    size_t n;                        /* buckets; b[] valid only for ALLOW and DENY */
    struct cmx_limits_state b[CMX_LIMITS_MAX_BUCKETS]; /* in the order given */
};

/* Called exactly once per accepted take with the outcome; r is valid only during the call.
 * See the header comment for which thread and when. */
typedef void (*cmx_limits_cb)(void *ud, const struct cmx_limits_result *r);

/* Decision counters, summed over clients (closed ones included). */
struct cmx_limits_counters {
    uint64_t allowed;        /* ALLOW */
    uint64_t denied;         /* DENY */
    uint64_t backend_errors; /* takes and settles the backend failed (any policy) */
    uint64_t fail_open;      /* ERROR_ALLOW answers */
    uint64_t fail_closed;    /* ERROR_DENY answers */
};

struct cmx_limits;
struct cmx_limits_client;

/* A validated bucket as backends see it. */
struct cmx_limits_item {
    enum cmx_limits_unit unit; /* from the bucket */
    int64_t limit;             /* from the bucket */
    int64_t period_us;         /* from the bucket */
    int64_t cost;              /* from the bucket (settle: delta) */
    int64_t unit_level;        /* level units per cost unit: period_us / g */
    int64_t rate;              /* level units drained per microsecond: limit / g */
    int64_t capacity;          /* limit * unit_level */
    int64_t id_limit;          /* identity with the key: limit (0 for QUOTA) */
    int64_t init;              /* QUOTA: level of an absent bucket; 0 otherwise */
    int64_t ttl_us;            /* QUOTA: lifetime after the last change; 0 otherwise */
};

/* A validated take or settle handed to a backend. keys[i] point into the caller's buckets
 * and are valid only during the ops call. */
struct cmx_limits_req {
    size_t n;                                             /* 1..CMX_LIMITS_MAX_BUCKETS */
    bool settle;                                          /* adjustment, never refused */
    const char *keys[CMX_LIMITS_MAX_BUCKETS];             /* bucket keys */
    size_t key_lens[CMX_LIMITS_MAX_BUCKETS];              /* their lengths */
    struct cmx_limits_item items[CMX_LIMITS_MAX_BUCKETS]; /* parameters */
};

/* A backend. One const instance per file (limits_memory.c, limits_redis.c). */
struct cmx_limits_ops {
    const char *name; /* "memory", "redis" */
    /* Sets up l->impl from l->cfg. 0 or a negative cmx_err. Main thread. */
    int (*init)(struct cmx_limits *l);
    /* Frees l->impl. Every client is closed. */
    void (*fini)(struct cmx_limits *l);
    /* Allocates a client (with struct cmx_limits_client first) for loop. Worker thread. */
    int (*client_new)(struct cmx_limits *l, uv_loop_t *loop, struct cmx_limits_client **out);
    /* Fails pending work (cmx_limits_complete_error with CMX_ECANCELED), closes handles and
     * frees the client, possibly after the loop runs once more. Worker thread. */
    void (*client_close)(struct cmx_limits_client *c);
    /* Takes or settles req; completes through cmx_limits_complete() or
     * cmx_limits_complete_error() exactly once (cb may be NULL for settles). Returns 0, or a
     * negative cmx_err without completing. Worker thread. */
    int (*run)(struct cmx_limits_client *c, const struct cmx_limits_req *req, cmx_limits_cb cb,
               void *ud);
};

extern const struct cmx_limits_ops cmx_limits_memory_ops;
extern const struct cmx_limits_ops cmx_limits_redis_ops;

/* Creates the process-wide limiter for cfg (copied). For redis it connects nothing yet
 * (clients do) but resolves the host once (blocking getaddrinfo, IPv4 first; the name is
 * kept if that fails). 0, CMX_ENOMEM or CMX_EINVAL (bad cfg). Main thread. */
int cmx_limits_new(const struct cmx_limits_config *cfg, struct cmx_limits **out);

/* Frees l. Every client must have been closed (and its loop run until the close finished).
 * NULL is fine. Main thread. */
void cmx_limits_free(struct cmx_limits *l);

/* Opens this worker's client on loop (redis: starts connecting; memory: loop may be NULL).
 * 0 or CMX_ENOMEM. Worker thread; the client belongs to that thread and loop. */
int cmx_limits_client_new(struct cmx_limits *l, uv_loop_t *loop, struct cmx_limits_client **out);

/* Closes c: pending takes complete now -- or, when called from inside a take's callback,
 * right after that callback returns -- with ERROR_ALLOW/ERROR_DENY per policy and error
 * CMX_ECANCELED; then its handles close; run the loop until they have (uv_run after
 * uv_walk-closing, as a worker does on shutdown) before freeing the loop. NULL is fine. */
void cmx_limits_client_close(struct cmx_limits_client *c);

/* Takes buckets b[0..n) all-or-nothing, each charged b[i].cost (>= 0). Returns 0 and calls
 * cb exactly once -- synchronously before returning (memory backend; redis while
 * disconnected) or later from the worker loop (redis) -- or returns CMX_EINVAL (n out of
 * range, bad key/limit/period/cost, a bucket given twice, capacity above
 * CMX_LIMITS_MAX_CAPACITY) or CMX_ENOMEM without calling cb. Callers must not touch state
 * after this call that cb may have freed. Worker thread of c. */
int cmx_limits_take(struct cmx_limits_client *c, const struct cmx_limits_bucket *b, size_t n,
                    cmx_limits_cb cb, void *ud);

/* Adds signed deltas b[i].cost to buckets b[0..n) (settlement: actual - reserved tokens; a
 * refund never goes below an empty bucket). Fire and forget: never refused; lost (and
 * counted as a backend error) when Redis is down. 0, CMX_EINVAL or CMX_ENOMEM. Worker
 * thread of c. */
int cmx_limits_settle(struct cmx_limits_client *c, const struct cmx_limits_bucket *b, size_t n);

/* Whether the backend answered the last time anyone asked (memory: always true; redis:
 * the latest connect/reply/failure seen by any worker). Thread: any. */
bool cmx_limits_reachable(const struct cmx_limits *l);

/* The backend's name, "memory" or "redis". */
const char *cmx_limits_backend_name(const struct cmx_limits *l);

/* Sums the decision counters of every client, open or closed. Thread: any. */
void cmx_limits_counters(struct cmx_limits *l, struct cmx_limits_counters *out);

/* Appends the Prometheus text of the counters: cloudmux_limits_decisions_total{result=...},
 * cloudmux_limits_backend_errors_total, cloudmux_limits_fail_open_total,
 * cloudmux_limits_fail_closed_total, cloudmux_limits_backend_up{backend=...}. 0 or a cmx_buf error.
 */
int cmx_limits_render_metrics(struct cmx_limits *l, struct cmx_buf *b);

/* Response headers for r, in OpenAI's formats. For each unit present the most constrained
 * bucket (least remaining, then longest reset) gives x-ratelimit-limit-<unit>,
 * x-ratelimit-remaining-<unit> and x-ratelimit-reset-<unit> (Go duration, "6m0s"); a DENY
 * (not too_large) or ERROR_DENY adds retry-after (whole seconds, rounded up, >= 1) and
 * retry-after-ms. ERROR_ALLOW adds nothing. */
struct cmx_limits_headers {
    size_t n; /* used entries */
    struct {
        const char *name; /* static, lower-case */
        char value[24];   /* NUL-terminated */
    } h[8];
};
void cmx_limits_headers(const struct cmx_limits_result *r, struct cmx_limits_headers *out);

/* Formats us (rounded up to a millisecond) as Go's time.Duration.String() does: "0s",
 * "20ms", "1s", "17.28s", "6m0s", "1h0m0s". Negative counts as 0. buf >= 32 bytes; returns
 * the length. */
size_t cmx_limits_format_duration(int64_t us, char *buf, size_t cap);

/* --- For backends (and unit tests): the GCRA arithmetic, exact in int64. --- */

/* Fills it->unit_level, rate and capacity from limit and period_us. CMX_EINVAL when
 * limit < 1, period_us < 1 or the capacity exceeds CMX_LIMITS_MAX_CAPACITY. */
int cmx_limits_gcra_params(struct cmx_limits_item *it);

/* A level after elapsed_us of draining (elapsed <= 0 drains nothing). */
int64_t cmx_limits_gcra_drain(const struct cmx_limits_item *it, int64_t level, int64_t elapsed_us);

/* Whether cost fits on top of level: level + cost * unit_level <= capacity. */
bool cmx_limits_gcra_fits(const struct cmx_limits_item *it, int64_t level, int64_t cost);

/* level + delta * unit_level clamped to [0, CMX_LIMITS_MAX_LEVEL]. */
int64_t cmx_limits_gcra_add(const struct cmx_limits_item *it, int64_t level, int64_t delta);

/* The state that a bucket at level reports (after a charge, or uncharged after a refusal);
 * cost is what was asked (for allowed / retry_after_us). */
void cmx_limits_gcra_state(const struct cmx_limits_item *it, int64_t level, int64_t cost,
                           struct cmx_limits_state *st);

/* Microseconds until level has drained to zero (rounded up). */
int64_t cmx_limits_gcra_reset_us(const struct cmx_limits_item *it, int64_t level);

/* --- For backends: the shared parts of the limiter and client. --- */

struct cmx_limits_client {
    struct cmx_limits *l;                  /* owner */
    struct cmx_limits_client *prev, *next; /* in l's client list */
    _Atomic uint64_t allowed, denied;      /* counters (relaxed; one writer) */
    _Atomic uint64_t errors, fail_open, fail_closed;
};

/* Completes a take from backend levels: levels[i] is bucket i's level after the charge when
 * ok, else its current uncharged level. Builds the result, counts it and calls cb (if any). */
void cmx_limits_complete(struct cmx_limits_client *c, const struct cmx_limits_req *req, bool ok,
                         const int64_t *levels, cmx_limits_cb cb, void *ud);

/* Completes a take or settle the backend failed (err: see cmx_limits_result.error): counts
 * it, applies the policy and calls cb (if any). */
void cmx_limits_complete_error(struct cmx_limits_client *c, bool settle, int err, cmx_limits_cb cb,
                               void *ud);

/* Records whether the backend is reachable (thread: any). */
void cmx_limits_set_reachable(struct cmx_limits *l, bool up);

/* The limiter's config / backend-private pointer. */
const struct cmx_limits_config *cmx_limits_config_of(const struct cmx_limits *l);
void *cmx_limits_impl(const struct cmx_limits *l);
void cmx_limits_set_impl(struct cmx_limits *l, void *impl);

/* Registers c (already allocated by a backend, c->l set) in its limiter / removes it,
 * adding its counters to the retired totals. */
void cmx_limits_client_register(struct cmx_limits_client *c);
void cmx_limits_client_unregister(struct cmx_limits_client *c);

#endif
