/* Prometheus metrics. Counters and histograms live in the per-deployment shared states
 * (src/router/health.h), one shard per worker, so the request path never takes a lock or
 * a contended atomic; a scrape sums the shards. */
#ifndef CMX_OBS_METRICS_H
#define CMX_OBS_METRICS_H

#include <stdint.h>

#include "core/buf.h"

/* Appends the text exposition format (version 0.0.4) of every metric to b. inflight is
 * the number of requests being handled right now. 0 or CMX_ENOMEM/CMX_ETOOBIG. */
int cmx_metrics_render(struct cmx_buf *b, int64_t inflight);

#endif
