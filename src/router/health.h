/* Per-deployment state shared by every worker and kept across config reloads: the circuit
 * breaker, latency (EWMA of time to first byte), requests in flight, a recent error rate,
 * per-worker smooth-weighted-round-robin weights and the deployment's metric shards.
 *
 * A deployment is identified by (public model, provider name, upstream model); a reload
 * that keeps the triple keeps its state. States live until cmx_dep_states_free() at exit.
 * Everything here is lock-free on the request path (relaxed atomics; each worker writes
 * only its own shard). */
#ifndef CMX_ROUTER_HEALTH_H
#define CMX_ROUTER_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CMX_MAX_WORKERS 128

enum cmx_circuit {
    CMX_CIRCUIT_CLOSED = 0, /* traffic flows */
    CMX_CIRCUIT_OPEN,       /* skipped until open_until */
    CMX_CIRCUIT_HALF_OPEN,  /* one probe request is in flight */
};

struct cmx_breaker_cfg {
    int failures;    /* consecutive retryable failures that open the circuit */
    int cooldown_ms; /* open -> half-open after this */
    int max_wait_ms; /* a 429/RetryInfo asking for longer opens the circuit until then */
};

/* Status codes tracked one by one in cmx_requests_total; others count as "other". */
// clang-format off
#define CMX_METRIC_CODES(XX) \
    XX(200) XX(400) XX(401) XX(403) XX(404) XX(405) XX(408) XX(409) XX(413) XX(415) XX(422) \
    XX(429) XX(431) XX(499) XX(500) XX(502) XX(503) XX(504) XX(529)
// clang-format on
#define CMX_N_CODES 20 /* the list above + "other" */

enum cmx_attempt_outcome {
    CMX_OUTCOME_SUCCESS,
    CMX_OUTCOME_HTTP_429,
    CMX_OUTCOME_HTTP_4XX,
    CMX_OUTCOME_HTTP_5XX,
    CMX_OUTCOME_CONNECT_ERROR,
    CMX_OUTCOME_TIMEOUT,
    CMX_OUTCOME_RESET,
    CMX_OUTCOME_CANCELED,
    CMX_OUTCOME_ERROR,
    CMX_N_OUTCOMES
};

/* Seconds: 5ms .. 10min. */
#define CMX_HIST_BOUNDS_MS                                                                         \
    {                                                                                              \
        5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000,       \
            600000                                                                                 \
    }
#define CMX_N_BUCKETS 16

struct cmx_hist {
    atomic_uint_fast64_t buckets[CMX_N_BUCKETS + 1]; /* non-cumulative; last is +Inf */
    atomic_uint_fast64_t sum_us;                     /* sum of observations */
};

/* One worker's counters for one deployment (written by that worker only). */
struct cmx_dep_shard {
    atomic_uint_fast64_t requests[CMX_N_CODES];    /* by status code slot */
    atomic_uint_fast64_t attempts[CMX_N_OUTCOMES]; /* by outcome */
    atomic_uint_fast64_t tokens[3];                /* prompt, completion, cached */
    struct cmx_hist duration;                      /* whole request */
    struct cmx_hist ttfb;                          /* request start -> first byte out */
    struct cmx_hist upstream;                      /* one attempt */
    int64_t swrr_current;                          /* smooth weighted round robin */
    char pad[64];                                  /* keep shards on their own lines */
};

struct cmx_dep_state {
    char *model;                         /* public model name ("" for the catch-all) */
    char *provider;                      /* provider name */
    char *cloud;                         /* provider's cloud label */
    char *upstream_model;                /* deployment's model */
    atomic_int circuit;                  /* enum cmx_circuit */
    atomic_int consecutive_failures;     /* retryable failures in a row */
    atomic_uint_fast64_t open_until_ms;  /* monotonic ms until which it stays open */
    atomic_int_fast64_t ewma_ttfb_us;    /* -1 until the first sample */
    atomic_int_fast64_t inflight;        /* attempts in progress */
    atomic_int_fast64_t error_rate_ppm;  /* EWMA of failures, parts per million */
    atomic_uint_fast64_t last_change_ms; /* wall-clock ms of the last circuit change */
    atomic_uint_fast64_t generation;     /* config generation that last attached it */
    struct cmx_dep_shard shards[CMX_MAX_WORKERS];
    struct cmx_dep_state *next; /* registry list */
};

/* Returns the state for (model, provider, upstream_model), creating it the first time.
 * cloud is recorded (updated on a later call). NULL only when out of memory. Thread: any
 * (takes a mutex: call it at config load, never per request). */
struct cmx_dep_state *cmx_dep_state_get(const char *model, const char *provider, const char *cloud,
                                        const char *upstream_model);

/* Calls fn for every state ever created, in creation order. Thread: any. */
void cmx_dep_states_each(void (*fn)(struct cmx_dep_state *s, void *arg), void *arg);

/* Frees every state. Only at exit, once no worker runs. */
void cmx_dep_states_free(void);

/* Monotonic milliseconds (for open_until). */
uint64_t cmx_mono_ms(void);

/* Whether a request may use s now. Closed: yes. Open before open_until: no. Open after:
 * exactly one caller gets yes with *probe = true (half-open); the others no. */
bool cmx_breaker_allow(struct cmx_dep_state *s, uint64_t now_ms, bool *probe);

/* Records a successful attempt (a response head with a non-retryable status). Closes a
 * half-open circuit. */
void cmx_breaker_success(struct cmx_dep_state *s, bool probe);

/* Records a retryable failure. retry_after_ms >= 0 is the upstream's requested wait: when
 * it exceeds cfg->max_wait_ms the circuit opens until then. Returns true when this call
 * opened the circuit. */
bool cmx_breaker_failure(struct cmx_dep_state *s, const struct cmx_breaker_cfg *cfg, bool probe,
                         int64_t retry_after_ms, uint64_t now_ms);

/* A probe that ended without an outcome (client gone): lets another request probe. */
void cmx_breaker_probe_abandoned(struct cmx_dep_state *s, bool probe);

/* Feeds one time-to-first-byte sample into the EWMA (alpha 1/5). */
void cmx_dep_observe_ttfb(struct cmx_dep_state *s, uint64_t us);

/* Feeds one attempt outcome into the recent error rate (EWMA, alpha 1/20). */
void cmx_dep_observe_outcome(struct cmx_dep_state *s, bool failed);

/* Adds v to a counter that only the calling worker writes (a shard's). */
void cmx_counter_add(atomic_uint_fast64_t *c, uint64_t v);

/* Observes v (microseconds) into h, a shard's histogram (single writer). */
void cmx_hist_observe(struct cmx_hist *h, uint64_t us);

/* Slot of status in cmx_dep_shard.requests. */
int cmx_metric_code_slot(int status);

#endif
