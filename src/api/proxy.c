/* The proxy for POST /v1/chat/completions and /v1/embeddings.
 *
 * One client request becomes one or more upstream attempts over the model's deployments
 * (priority order, ties round-robin). An attempt that fails before anything reached the
 * client — connect failure, timeout before the first byte, a retryable status, a reset
 * before the first event — moves on to the next deployment (the last one is retried while
 * attempts remain). Once the client has bytes, a failure goes in-band and the stream ends.
 *
 * Streams are relayed event by event: the provider's decoder yields OpenAI chunks, this
 * file fixes them up (usage captured and, when the client did not ask for it, stripped;
 * missing id/created filled in) and writes each one out at once. */
#include "api/api.h"
#include "core/fmt.h"
#include "api/admit.h"
#include "budget/budget.h"
#include "tenants/tenants.h"
#include "api/fanout.h"
#include "config/config.h"
#include "core/err.h"
#include "core/json_scan.h"
#include "core/log.h"
#include "providers/provider.h"
#include "router/retry.h"
#include "router/router.h"
#include "agreements/agreements.h"
#include "core/clock.h"
#include "runtime/worker.h"
#include "ledger/ledger.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#define MAX_TRIED         16
#define MAX_RESPONSE_BODY (64u << 20)
#define BACKOFF_BASE_MS   100
#define BACKOFF_CAP_MS    2000

/* parts of one fan-out attempt (provider ops->parts) in flight at once */
#define FANOUT_CONCURRENCY 8

struct proxy;

struct retry_timer {
    uv_timer_t t;
    struct proxy *p; /* NULL once the proxy is gone */
};

struct proxy {
    struct cmx_api_ctx *ctx;                /* request context */
    struct cmx_http_req *req;               /* the client's request */
    struct cmx_worker *w;                   /* its worker */
    struct cmx_client_req cr;               /* parsed client request */
    const struct cmx_model_cfg *model;      /* the public model */
    struct cmx_agreement_check *agreements; /* NULL when no agreement governs */
    size_t next;                            /* index in route.order of the next attempt */
    int attempts;                           /* attempts started */
    uint64_t deadline_ns;                   /* uv_hrtime() by which everything must be done */
    /* the current attempt */
    const struct cmx_deployment_cfg *dep; /* deployment */
    const struct cmx_provider_ops *ops;   /* its provider */
    struct cmx_provider_req preq;         /* what was sent */
    struct cmx_upstream_xfer *xfer;       /* in progress, NULL when none */
    void *pending;                        /* the provider's pending prepare step, or NULL */
    uint64_t attempt_start_ns;            /* when it started */
    uint64_t attempt_end_ns;              /* when its transfer ended (mark_upstream_end) */
    bool probe;                           /* it is a half-open circuit's probe */
    bool attempt_open;                    /* started, not yet accounted for */
    int status;                           /* upstream status, 0 before headers */
    bool streaming;                       /* relaying an event stream */
    void *stream_st;                      /* provider's stream decoder */
    struct cmx_buf body;                  /* buffered upstream body (non-stream / errors) */
    struct cmx_retry_hint hint;           /* the upstream's retry headers */
    const struct cmx_http_header *resp_h; /* headers of an error answer (arena), for parse_error */
    size_t resp_nh;
    int feed_err;           /* the stream decoder's error that aborted the transfer */
    struct cmx_fanout *fan; /* fan-out attempt in progress (provider ops->parts), or NULL */
    void *fan_state;        /* the provider's state for its parts */
    size_t fan_n;           /* number of parts */
    bool fanned;            /* p->body already holds the assembled OpenAI answer */
    /* the client side */
    bool client_started;    /* the answer's head went out */
    bool done_seen;         /* the upstream sent [DONE] */
    bool inband_error;      /* an error event was relayed */
    bool paused;            /* upstream paused for client backpressure */
    struct cmx_buf out;     /* framing scratch */
    struct cmx_buf fixed;   /* rewritten chunk scratch */
    uint64_t created;       /* unix seconds for chunks that lack "created" */
    struct cmx_usage usage; /* what the upstream reported */
    uint64_t text_bytes;    /* generated text relayed to the client (estimates without usage) */
    bool produced;          /* metered as having produced tokens (meter(): not failed) */
    /* the last failure, for the final error */
    int last_status;                     /* upstream status, or 0 for a transport failure */
    int last_err;                        /* transport error (CMX_E*) */
    struct cmx_upstream_error last_uerr; /* parsed upstream error */
    struct retry_timer *retry;           /* pending backoff, NULL when none */
    int n_tried;                         /* entries of tried */
    /* ---- the large arrays last: cmx_api_proxy zeroes only what comes before them ---- */
    struct cmx_route route; /* attempt order (set by cmx_router_plan) */
    struct {
        const char *provider; /* who was tried */
        char reason[120];     /* why it failed, no secrets */
    } tried[MAX_TRIED];       /* failed attempts, for the final error (n_tried of them) */
};

static void start_attempt(struct proxy *p);
static void attempt_failed(struct proxy *p);
static void upstream_error_answer(struct proxy *p);

/* ---- helpers --------------------------------------------------------------------------- */

static void release_attempt(struct proxy *p)
{
    if (p->pending != NULL) {
        p->ops->prepare_cancel(p->pending);
        p->pending = NULL;
    }
    if (p->xfer != NULL) {
        p->w->up_ops->cancel(p->xfer);
        p->xfer = NULL;
    }
    if (p->stream_st != NULL) {
        p->ops->stream_free(p->stream_st);
        p->stream_st = NULL;
    }
    cmx_fanout_free(p->fan);
    p->fan = NULL;
    cmx_buf_free(&p->body);
}

static void retry_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void cancel_retry(struct proxy *p)
{
    if (p->retry != NULL) {
        p->retry->p = NULL;
        uv_timer_stop(&p->retry->t);
        uv_close((uv_handle_t *)&p->retry->t, retry_closed_cb);
        p->retry = NULL;
    }
}

static void proxy_cleanup(void *arg)
{
    struct proxy *p = arg;
    /* a half-open probe slot taken for an attempt that never ran (the request could not be
     * built for that provider, or the client left while it was being prepared): given back,
     * or the circuit would stay half-open with no probe ever let through */
    if (p->probe && !p->attempt_open && p->dep != NULL && p->dep->state != NULL)
        cmx_breaker_probe_abandoned(p->dep->state, true);
    p->probe = false;
    /* rate limits and budget: corrected to what was metered */
    const struct cmx_usage *u = &p->usage;
    int64_t tokens = -1, cost = 0;
    struct cmx_usage est = {0};
    if (!u->reported && p->produced) {
        /* no usage from the upstream: the ledger's estimate, so that a budget counts what
         * the ledger bills (and a client cannot escape it by leaving before the usage) */
        cmx_ledger_estimate(p->cr.body_len, p->text_bytes, &est.prompt_tokens,
                            &est.completion_tokens);
        est.reported = true;
        u = &est;
    }
    if (u->reported) {
        tokens = (u->prompt_tokens > 0 ? u->prompt_tokens : 0) +
                 (u->completion_tokens > 0 ? u->completion_tokens : 0);
        if (p->dep != NULL && p->dep->has_price)
            cost = cmx_ledger_revenue(&p->dep->price, u->prompt_tokens, u->completion_tokens,
                                      u->cached_tokens);
    }
    cmx_admit_settle(p->ctx, tokens, cost);
    cancel_retry(p);
    release_attempt(p);
    cmx_buf_free(&p->out);
    cmx_buf_free(&p->fixed);
}

/* Replaces every configured credential found in s with [REDACTED]. */
static const char *redact(struct proxy *p, const char *s)
{
    if (s == NULL)
        return NULL;
    const struct cmx_config *cfg = p->ctx->cfg;
    char *cur = NULL;
    for (size_t i = 0; i < cfg->n_providers * 4; i++) {
        const struct cmx_provider_cfg *pc = &cfg->providers[i / 4];
        const char *key = i % 4 == 0   ? pc->api_key
                          : i % 4 == 1 ? pc->secret_access_key /* bedrock */
                          : i % 4 == 2 ? pc->session_token     /* bedrock */
                                       : pc->access_token;     /* vertex */
        size_t kl = key ? strlen(key) : 0;
        if (kl < 4)
            continue;
        const char *src = cur ? cur : s;
        if (strstr(src, key) == NULL)
            continue;
        struct cmx_buf b;
        cmx_buf_init(&b, 1u << 20);
        const char *q;
        while ((q = strstr(src, key)) != NULL) {
            cmx_buf_append(&b, src, (size_t)(q - src));
            cmx_buf_puts(&b, "[REDACTED]");
            src = q + kl;
        }
        cmx_buf_puts(&b, src);
        cur = cmx_arena_strndup(&p->req->arena, b.data ? b.data : "", b.len);
        cmx_buf_free(&b);
    }
    return cur ? cur : s;
}

static void set_result_headers(struct proxy *p)
{
    char n[16];
    if (p->dep != NULL)
        cmx_http_add_header(p->req, "x-cloudmux-provider", p->dep->provider->name);
    if (p->dep != NULL && p->agreements != NULL) {
        const char *applied = cmx_agreements_applied(p->agreements, p->dep);
        if (applied != NULL)
            cmx_http_add_header(p->req, "x-cloudmux-agreement", applied);
    }
    if (p->attempts > 0) {
        n[sizeof(n) - 1] = '\0';
        cmx_http_add_header(p->req, "x-cloudmux-attempts",
                            cmx_fmt_u64(n + sizeof(n) - 1, (uint64_t)p->attempts));
    }
}

static void fill_log(struct proxy *p)
{
    struct cmx_access_entry *e = &p->ctx->log;
    e->model = p->model ? p->model->name : p->cr.model;
    e->provider = p->dep ? p->dep->provider->name : NULL;
    e->attempts = p->attempts;
    e->stream = p->cr.stream;
    if (p->usage.reported) {
        e->prompt_tokens = p->usage.prompt_tokens;
        e->completion_tokens = p->usage.completion_tokens;
        e->cached_tokens = p->usage.cached_tokens;
    }
}

/* Hands the request to the ledger (src/ledger/): one usage record per request that reached
 * an upstream. failed: no tokens were produced (nothing is estimated then). */
static void meter(struct proxy *p, int status, bool failed)
{
    if (p->dep == NULL || p->attempts == 0)
        return;
    p->produced = !failed;
    struct cmx_usage none = {0};
    struct cmx_ledger_input in = {
        .cfg = p->ctx->cfg,
        .request_id = p->ctx->request_id,
        .model = p->model,
        .dep = p->dep,
        .usage = failed && !p->usage.reported ? &none : &p->usage,
        .status = status,
        .latency_us = (uv_hrtime() - p->req->start_ns) / 1000,
        .stream = p->cr.stream,
        .request_bytes = p->cr.body_len,
        .output_text_bytes = p->text_bytes,
        .agreements = p->agreements ? cmx_agreements_applied(p->agreements, p->dep) : NULL,
        .at_ms = (int64_t)cmx_clock_now_ms(),
        /* who it ran as (keys: src/keys/keystore.c) */
        .tenant = p->ctx->caller.tenant ? p->ctx->caller.tenant->name : NULL,
        .key_id = p->ctx->caller.key ? p->ctx->caller.key->id : NULL,
    };
    none.reported = true;
    cmx_ledger_record(&in);
}

static void mark_upstream_end(struct proxy *p)
{
    if (p->attempt_start_ns != 0) {
        p->attempt_end_ns = uv_hrtime();
        p->ctx->log.upstream_latency_us =
            (int64_t)((p->attempt_end_ns - p->attempt_start_ns) / 1000);
    }
}

static enum cmx_attempt_outcome outcome_of(int status, int err)
{
    switch (err) {
    case 0:
        if (status >= 200 && status < 400)
            return CMX_OUTCOME_SUCCESS;
        if (status == 429)
            return CMX_OUTCOME_HTTP_429;
        return status < 500 ? CMX_OUTCOME_HTTP_4XX : CMX_OUTCOME_HTTP_5XX;
    case CMX_ECONNECT:
    case CMX_ETLS:
        return CMX_OUTCOME_CONNECT_ERROR;
    case CMX_ETIMEOUT:
        return CMX_OUTCOME_TIMEOUT;
    case CMX_ERESET:
        return CMX_OUTCOME_RESET;
    case CMX_ECANCELED:
        return CMX_OUTCOME_CANCELED;
    default:
        return CMX_OUTCOME_ERROR;
    }
}

/* Accounts for the current attempt exactly once: metrics, circuit breaker, error rate,
 * and the list of failures for the final error. status/err describe how it ended. */
static void end_attempt(struct proxy *p, int status, int err)
{
    if (!p->attempt_open)
        return;
    p->attempt_open = false;
    struct cmx_dep_state *s = p->dep->state;
    enum cmx_attempt_outcome o = outcome_of(status, err);
    /* the transfer's end when on_done marked it (one clock read less), else now */
    uint64_t now = p->attempt_end_ns > p->attempt_start_ns ? p->attempt_end_ns : uv_hrtime();
    bool failed = o != CMX_OUTCOME_SUCCESS && o != CMX_OUTCOME_CANCELED &&
                  (o != CMX_OUTCOME_HTTP_4XX || cmx_retry_status(status));
    if (s != NULL) {
        struct cmx_dep_shard *sh = &s->shards[p->w->id];
        cmx_counter_add(&sh->attempts[o], 1);
        cmx_hist_observe(&sh->upstream, (now - p->attempt_start_ns) / 1000);
        atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
        if (o == CMX_OUTCOME_CANCELED) {
            cmx_breaker_probe_abandoned(s, p->probe);
        } else if (failed) {
            const struct cmx_routing_cfg *rc = &p->ctx->cfg->routing;
            struct cmx_breaker_cfg bc = {rc->circuit_failures, rc->circuit_cooldown_ms,
                                         rc->circuit_max_wait_ms};
            int64_t wait = o == CMX_OUTCOME_HTTP_429 || status == 503 ? p->hint.after_ms : -1;
            if (cmx_breaker_failure(s, &bc, p->probe, wait, cmx_mono_ms()))
                cmx_log(CMX_LOG_WARN, "circuit of %s/%s opened (%s)", s->model, s->provider,
                        err ? cmx_strerror(err) : "upstream error status");
        } else {
            cmx_breaker_success(s, p->probe);
        }
        if (o != CMX_OUTCOME_CANCELED)
            cmx_dep_observe_outcome(s, failed);
    }
    p->probe = false; /* its outcome is in */
    if (o != CMX_OUTCOME_SUCCESS && p->n_tried < MAX_TRIED) {
        int i = p->n_tried++;
        p->tried[i].provider = p->dep->provider->name;
        if (err != 0)
            snprintf(p->tried[i].reason, sizeof(p->tried[i].reason), "%s", cmx_strerror(err));
        else
            snprintf(p->tried[i].reason, sizeof(p->tried[i].reason), "HTTP %d", status);
    }
}

/* Appends " (attempts: a: reason; b: reason)" to a message. */
static const char *with_attempts(struct proxy *p, const char *msg)
{
    if (p->n_tried <= 1)
        return msg;
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 16);
    cmx_buf_printf(&b, "%s (attempts: ", msg);
    for (int i = 0; i < p->n_tried; i++)
        cmx_buf_printf(&b, "%s%s: %s", i ? "; " : "", p->tried[i].provider, p->tried[i].reason);
    cmx_buf_puts(&b, ")");
    const char *out = cmx_arena_strndup(&p->req->arena, b.data, b.len);
    cmx_buf_free(&b);
    return out ? out : msg;
}

/* Appends ,"attempts":[{"provider","reason"}...] before the error object's closing braces. */
static void error_with_attempts(struct proxy *p, struct cmx_buf *b, const char *message,
                                const char *type, const char *code, const char *param)
{
    cmx_api_error_json(b, message, type, code, param);
    if (p->n_tried == 0 || b->len < 2)
        return;
    b->len -= 2; /* drop "}}" */
    cmx_buf_puts(b, ",\"attempts\":[");
    for (int i = 0; i < p->n_tried; i++) {
        cmx_buf_puts(b, i ? ",{\"provider\":\"" : "{\"provider\":\"");
        cmx_buf_json_escape(b, p->tried[i].provider, strlen(p->tried[i].provider));
        cmx_buf_puts(b, "\",\"reason\":\"");
        cmx_buf_json_escape(b, p->tried[i].reason, strlen(p->tried[i].reason));
        cmx_buf_puts(b, "\"}");
    }
    cmx_buf_puts(b, "]}}");
}

/* The final answer when no attempt succeeded. */
static void fail_final(struct proxy *p)
{
    fill_log(p);
    set_result_headers(p);
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 20);
    int status;
    if (p->last_status != 0) {
        const struct cmx_upstream_error *e = &p->last_uerr;
        const char *type = e->type ? e->type : cmx_api_error_type(p->last_status);
        error_with_attempts(p, &b, with_attempts(p, redact(p, e->message)), type,
                            redact(p, e->code), redact(p, e->param));
        p->ctx->log.error = e->code ? redact(p, e->code) : type;
        status = p->last_status;
        meter(p, status, true);
        if (p->hint.after_ms >= 0 && (status == 429 || status == 503)) {
            char v[32];
            snprintf(v, sizeof(v), "%lld", (long long)((p->hint.after_ms + 999) / 1000));
            cmx_http_add_header(p->req, "retry-after", v);
        }
    } else {
        const char *name = p->dep ? p->dep->provider->name : "upstream";
        char msg[256];
        bool timeout = p->last_err == CMX_ETIMEOUT;
        if (timeout)
            snprintf(msg, sizeof(msg), "The upstream provider %s did not answer in time.", name);
        else
            snprintf(msg, sizeof(msg), "Could not get an answer from the upstream provider %s: %s.",
                     name, cmx_strerror(p->last_err));
        const char *code = timeout ? "upstream_timeout" : "upstream_unreachable";
        error_with_attempts(p, &b, with_attempts(p, msg), "server_error", code, NULL);
        p->ctx->log.error = code;
        status = timeout ? 504 : 502;
    }
    cmx_api_json(p->ctx, status, b.data, b.len);
    cmx_buf_free(&b);
}

/* ---- streaming --------------------------------------------------------------------------- */

static void client_drained(struct cmx_http_req *req);

static void start_client_stream(struct proxy *p)
{
    if (p->client_started)
        return;
    p->client_started = true;
    set_result_headers(p);
    cmx_http_add_header(p->req, "cache-control", "no-cache");
    p->ctx->log.ttfb_us = (int64_t)((uv_hrtime() - p->req->start_ns) / 1000);
    cmx_http_stream_start(p->req, 200, "text/event-stream");
}

static void write_event(struct proxy *p, const char *data, size_t len)
{
    start_client_stream(p);
    cmx_buf_reset(&p->out);
    cmx_buf_puts(&p->out, "data: ");
    cmx_buf_append(&p->out, data, len);
    cmx_buf_puts(&p->out, "\n\n");
    size_t queued = cmx_http_stream_write(p->req, p->out.data, p->out.len);
    if (queued > CMX_HTTP_HIGH_WATER && !p->paused && p->xfer != NULL) {
        p->paused = true;
        p->req->on_drain = client_drained;
        p->w->up_ops->pause(p->xfer, true);
    }
}

static void client_drained(struct cmx_http_req *req)
{
    struct proxy *p = ((struct cmx_api_ctx *)req->data)->proxy;
    if (p->paused && p->xfer != NULL) {
        p->paused = false;
        req->on_drain = NULL;
        p->w->up_ops->pause(p->xfer, false);
    }
}

/* One OpenAI chunk from the provider's decoder. */
static int on_chunk(void *ud, const char *json, size_t len)
{
    struct proxy *p = ud;
    struct cmx_chunk_result res;
    int r = cmx_openai_chunk_filter(json, len, p->cr.include_usage, "chat.completion.chunk",
                                    p->ctx->request_id, p->created, &p->usage, &p->fixed, &res);
    if (r != 0)
        return r;
    if (res.done) {
        p->done_seen = true;
        return 0;
    }
    if (res.drop)
        return 0;
    if (res.choices != NULL)
        p->text_bytes += cmx_openai_text_bytes(res.choices, res.choices_len);
    if (res.error) {
        /* an upstream's in-band error may quote a credential, like its HTTP errors */
        p->inband_error = true;
        const char *text = cmx_arena_strndup(&p->req->arena, res.data, res.len);
        const char *clean = text ? redact(p, text) : NULL;
        if (clean != NULL) {
            write_event(p, clean, strlen(clean));
            return 0;
        }
    }
    write_event(p, res.data, res.len);
    return 0;
}

static void send_inband_error(struct proxy *p, int err)
{
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 16);
    char msg[256];
    snprintf(msg, sizeof(msg), "The upstream provider %s failed mid-stream: %s.",
             p->dep->provider->name, cmx_strerror(err));
    cmx_api_error_json(&b, msg, "server_error",
                       err == CMX_ETIMEOUT ? "upstream_timeout" : "upstream_stream_error", NULL);
    write_event(p, b.data, b.len);
    cmx_buf_free(&b);
    p->inband_error = true; /* no [DONE] after it: the stream did not complete */
    p->ctx->log.error = err == CMX_ETIMEOUT ? "upstream_timeout" : "upstream_stream_error";
}

static void finish_stream(struct proxy *p, int err)
{
    end_attempt(p, p->status, err);
    if (!p->inband_error) {
        static const char done[] = "data: [DONE]\n\n";
        start_client_stream(p);
        cmx_http_stream_write(p->req, done, sizeof(done) - 1);
    }
    fill_log(p);
    cmx_api_log(p->ctx, 200);
    meter(p, 200, false);
    struct cmx_http_req *req = p->req;
    release_attempt(p);
    cmx_http_stream_end(req);
}

/* ---- upstream callbacks ---------------------------------------------------------------- */

/* A 2xx from an OpenAI-format server that ignored "stream": true: a whole JSON answer,
 * buffered and re-emitted as the stream the client asked for (relay_body). */
static bool whole_json_answer(const struct proxy *p, const struct cmx_http_header *h, size_t n)
{
    if (p->ops->translate != NULL)
        return false; /* the translated providers' streams have their own framing */
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len == 12 && strncasecmp(h[i].name, "content-type", 12) == 0)
            return h[i].value_len >= 16 && strncasecmp(h[i].value, "application/json", 16) == 0;
    }
    return false;
}

static int on_headers(void *ud, int status, const struct cmx_http_header *h, size_t n)
{
    struct proxy *p = ud;
    p->status = status;
    /* retry hints only matter when the attempt fails: a success skips reading them */
    if (status >= 200 && status < 300)
        p->hint = (struct cmx_retry_hint){.after_ms = -1, .should = -1};
    else
        cmx_retry_hint_parse(h, n, cmx_time_unix_ms(), &p->hint);
    if (status < 200 || status >= 300) {
        /* kept for the provider's parse_error (Bedrock's x-amzn-ErrorType) */
        struct cmx_http_header *c = cmx_arena_alloc(&p->req->arena, (n ? n : 1) * sizeof(*c));
        if (c == NULL)
            return CMX_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            c[i] = h[i];
            c[i].name = cmx_arena_strndup(&p->req->arena, h[i].name, h[i].name_len);
            c[i].value = cmx_arena_strndup(&p->req->arena, h[i].value, h[i].value_len);
            if (c[i].name == NULL || c[i].value == NULL)
                return CMX_ENOMEM;
        }
        p->resp_h = c;
        p->resp_nh = n;
    }
    if (p->dep->state != NULL && status >= 200 && status < 300)
        cmx_dep_observe_ttfb(p->dep->state, (uv_hrtime() - p->attempt_start_ns) / 1000);
    if (status >= 200 && status < 300 && p->cr.stream && !whole_json_answer(p, h, n)) {
        p->streaming = true;
        p->stream_st = p->ops->stream_new(&p->req->arena, p->dep);
        if (p->stream_st == NULL)
            return CMX_ENOMEM;
    }
    return 0;
}

static int on_data(void *ud, const char *data, size_t len)
{
    struct proxy *p = ud;
    if (p->streaming) {
        int r = p->ops->stream_feed(p->stream_st, data, len, on_chunk, p);
        if (r < 0)
            p->feed_err = r; /* on_done reports it instead of "canceled" */
        return r;
    }
    return cmx_buf_append(&p->body, data, len);
}

/* A complete, successful non-streamed answer. */
static void relay_body(struct proxy *p)
{
    const char *body = p->body.data ? p->body.data : "";
    size_t len = p->body.len;
    struct cmx_buf translated;
    cmx_buf_init(&translated, MAX_RESPONSE_BODY);
    bool bad = false;
    if (p->ops->translate != NULL && !p->fanned) {
        bad = p->ops->translate(p->dep, &p->cr, body, len, &p->req->arena, &translated) != 0;
        body = translated.data;
        len = translated.len;
    }
    struct cmx_chunk_result res;
    if (!bad && cmx_openai_chunk_filter(
                    body, len, true, p->cr.ep == CMX_EP_CHAT ? "chat.completion" : "list",
                    p->ctx->request_id, p->created, &p->usage, &p->fixed, &res) == 0) {
        bad = res.invalid;
        if (!bad && p->cr.ep == CMX_EP_CHAT) {
            body = res.data;
            len = res.len;
            if (!p->usage.reported && res.choices != NULL)
                p->text_bytes = cmx_openai_text_bytes(res.choices, res.choices_len);
        }
    }
    if (bad) {
        /* a 2xx whose body is no answer (not JSON, empty, untranslatable): the attempt
         * failed, and another deployment may take it */
        cmx_log(CMX_LOG_WARN, "request %s: provider %s answered %d with no valid body",
                p->ctx->request_id, p->dep->provider->name, p->status);
        cmx_buf_free(&translated);
        p->last_status = 0;
        p->last_err = CMX_EUPSTREAM;
        attempt_failed(p);
        return;
    }
    if (p->cr.stream) {
        /* the server ignored "stream": true: its whole answer as the stream asked for (its
         * chunks count the text again through on_chunk) */
        p->text_bytes = 0;
        int r = cmx_openai_completion_as_stream(body, len, on_chunk, p);
        cmx_buf_free(&translated);
        if (r != 0 && p->client_started)
            send_inband_error(p, r == CMX_ENOMEM ? CMX_ENOMEM : CMX_EUPSTREAM);
        if (r != 0 && !p->client_started) {
            p->last_status = 0;
            p->last_err = r == CMX_ENOMEM ? CMX_ENOMEM : CMX_EUPSTREAM;
            attempt_failed(p);
            return;
        }
        finish_stream(p, r == 0 ? 0 : CMX_EUPSTREAM);
        return;
    }
    end_attempt(p, p->status, 0);
    fill_log(p);
    set_result_headers(p);
    meter(p, 200, false);
    /* copy: the attempt's buffers go before the answer is written */
    struct cmx_http_req *req = p->req;
    char *copy = cmx_arena_alloc(&req->arena, len + 1);
    if (copy != NULL)
        memcpy(copy, body, len);
    cmx_buf_free(&translated);
    release_attempt(p);
    if (copy == NULL) {
        cmx_api_error(p->ctx, 500, "server_error", "internal_error", NULL, "Out of memory.");
        return;
    }
    cmx_api_json(p->ctx, 200, copy, len);
}

static void on_done(void *ud, int err, bool first_byte)
{
    struct proxy *p = ud;
    p->xfer = NULL; /* gone after this callback */
    mark_upstream_end(p);
    if (err == CMX_ECANCELED && p->feed_err != 0)
        err = p->feed_err == CMX_ENOMEM ? CMX_ENOMEM : CMX_EUPSTREAM;
    if (p->streaming) {
        if (err == 0) {
            int r = p->ops->stream_finish(p->stream_st, on_chunk, p);
            if (r != 0 && p->client_started) {
                send_inband_error(p, CMX_EUPSTREAM);
                finish_stream(p, CMX_EUPSTREAM);
                return;
            }
            if (!p->client_started && !p->done_seen) {
                /* 200 with no event at all: treat as a failed attempt */
                p->last_status = 0;
                p->last_err = CMX_EUPSTREAM;
                attempt_failed(p);
                return;
            }
            finish_stream(p, 0);
            return;
        }
        if (p->client_started) {
            if (err != CMX_ECANCELED)
                send_inband_error(p, err);
            finish_stream(p, err);
            return;
        }
        p->last_status = 0;
        p->last_err = err;
        attempt_failed(p);
        return;
    }
    if (err != 0) {
        p->last_status = 0;
        p->last_err = err;
        attempt_failed(p);
        return;
    }
    if (p->status >= 200 && p->status < 300) {
        relay_body(p);
        return;
    }
    upstream_error_answer(p);
}

/* An error answer from the upstream (status and body in p). */
static void upstream_error_answer(struct proxy *p)
{
    if (p->status < 400) {
        /* a redirect (or another answer that is neither a result nor an error): an API
         * endpoint never answers so, and it is not relayed (its Location is not the client's
         * business): a failed attempt, which another deployment may take */
        cmx_log(CMX_LOG_WARN, "request %s: provider %s answered %d: check its base_url",
                p->ctx->request_id, p->dep->provider->name, p->status);
        p->last_status = 0;
        p->last_err = CMX_EREDIRECT;
        attempt_failed(p);
        return;
    }
    p->last_status = p->status;
    p->last_err = 0;
    p->ops->parse_error(p->status, p->resp_h, p->resp_nh, p->body.data ? p->body.data : "",
                        p->body.len, &p->req->arena, &p->last_uerr);
    if (p->last_uerr.status >= 400 && p->last_uerr.status <= 599)
        p->last_status = p->last_uerr.status; /* what the error means (see parse_error) */
    /* issue 7: retry hints some upstreams put in the body (google.rpc.RetryInfo, Anthropic's
     * spend limit); a header hint wins */
    if (p->last_uerr.retry_after_ms > 0 && p->hint.after_ms < 0)
        p->hint.after_ms = p->last_uerr.retry_after_ms;
    if (p->last_uerr.no_retry)
        p->hint.should = 0;
    cmx_log(CMX_LOG_INFO, "request %s: provider %s answered %d", p->ctx->request_id,
            p->dep->provider->name, p->status);
    attempt_failed(p);
}

/* ---- attempts ----------------------------------------------------------------------------- */

static void retry_timer_cb(uv_timer_t *t)
{
    struct retry_timer *rt = t->data;
    struct proxy *p = rt->p;
    if (p == NULL)
        return;
    p->retry = NULL;
    uv_close((uv_handle_t *)t, retry_closed_cb);
    start_attempt(p);
}

static bool retryable(struct proxy *p)
{
    if (p->hint.should == 0)
        return false;
    if (p->last_status != 0)
        return p->hint.should == 1 || cmx_retry_status(p->last_status);
    return p->last_err != CMX_ECANCELED;
}

static void attempt_failed(struct proxy *p)
{
    end_attempt(p, p->last_status, p->last_status != 0 ? 0 : p->last_err);
    release_attempt(p);
    int max = p->ctx->cfg->routing.max_attempts;
    uint64_t now = uv_hrtime();
    if (!retryable(p) || p->attempts >= max || now >= p->deadline_ns) {
        fail_final(p);
        return;
    }
    bool same = p->next >= p->route.n; /* the last deployment is retried in place */
    uint64_t delay = 0;
    uint64_t left_ms = (p->deadline_ns - now) / 1000000u;
    if (p->hint.after_ms >= 0) {
        if (!same)
            delay = 0; /* another deployment can take it now */
        else if ((uint64_t)p->hint.after_ms >= left_ms) {
            fail_final(p); /* waiting would exceed the budget */
            return;
        } else
            delay = (uint64_t)p->hint.after_ms;
    } else if (same) {
        delay = cmx_backoff_ms(p->attempts, BACKOFF_BASE_MS, BACKOFF_CAP_MS, cmx_worker_rand(p->w));
    }
    if (delay >= left_ms)
        delay = left_ms / 2;
    if (delay == 0) {
        start_attempt(p);
        return;
    }
    struct retry_timer *rt = malloc(sizeof(*rt));
    if (rt == NULL) {
        fail_final(p);
        return;
    }
    rt->p = p;
    uv_timer_init(&p->w->loop, &rt->t);
    rt->t.data = rt;
    p->retry = rt;
    /* A wait the upstream asked for is a floor: libuv measures from the loop's
     * cached, millisecond-truncated clock, which can lag real time by up to a
     * millisecond plus this iteration's work. Refresh it and round up. */
    uv_update_time(&p->w->loop);
    uv_timer_start(&rt->t, retry_timer_cb, delay + 1, 0);
}

/* A fan-out attempt ended (see api/fanout.h). */
static void fanout_done(void *ud, const struct cmx_fanout_result *res)
{
    struct proxy *p = ud;
    mark_upstream_end(p);
    p->status = res->status;
    if (res->n_headers > 0) {
        cmx_retry_hint_parse(res->headers, res->n_headers, cmx_time_unix_ms(), &p->hint);
        p->resp_h = res->headers;
        p->resp_nh = res->n_headers;
    }
    if (res->err != 0) {
        p->last_status = 0;
        p->last_err = res->err;
        attempt_failed(p);
        return;
    }
    cmx_buf_reset(&p->body);
    if (res->status >= 200 && res->status < 300) {
        int r = p->ops->assemble(p->dep, &p->cr, p->fan_state, cmx_fanout_answers(p->fan), p->fan_n,
                                 &p->req->arena, &p->body);
        cmx_fanout_free(p->fan);
        p->fan = NULL;
        if (r != 0) {
            end_attempt(p, p->status, 0);
            p->last_status = 0;
            p->last_err = r == CMX_ENOMEM ? CMX_ENOMEM : CMX_EUPSTREAM;
            release_attempt(p);
            fail_final(p);
            return;
        }
        p->fanned = true;
        relay_body(p);
        return;
    }
    cmx_buf_append(&p->body, res->body, res->len);
    upstream_error_answer(p);
}

static int pick_timeout(int per_deployment, int per_provider, int global)
{
    return per_deployment > 0 ? per_deployment : per_provider > 0 ? per_provider : global;
}

/* The next deployment to try: skips one whose circuit is open (or whose half-open probe
 * another request holds) while later ones remain; the last one left is used regardless. */
static void pick_deployment(struct proxy *p)
{
    uint64_t now = cmx_mono_ms();
    for (;;) {
        size_t idx = p->next < p->route.n ? p->next++ : p->route.n - 1;
        const struct cmx_deployment_cfg *d = p->route.order[idx];
        bool probe = false;
        bool ok = d->state == NULL || cmx_breaker_allow(d->state, now, &probe);
        if (ok || p->next >= p->route.n) {
            p->dep = d;
            p->probe = probe;
            return;
        }
    }
}

static void send_attempt(struct proxy *p);

/* issue 7: the provider's asynchronous prepare step (an access token) has ended. */
static void prepared_cb(void *ud, int err)
{
    struct proxy *p = ud;
    p->pending = NULL;
    if (err != 0) {
        p->last_status = 0;
        p->last_err = err;
        p->attempt_open = true; /* accounted for as a failure of this deployment */
        p->attempt_start_ns = uv_hrtime();
        if (p->dep->state != NULL)
            atomic_fetch_add_explicit(&p->dep->state->inflight, 1, memory_order_relaxed);
        attempt_failed(p);
        return;
    }
    send_attempt(p);
}

static void start_attempt(struct proxy *p)
{
    pick_deployment(p);
    p->ops = cmx_provider_ops_for(p->dep->provider->type);
    p->attempts++;
    p->status = 0;
    p->streaming = false;
    p->done_seen = false;
    p->hint.after_ms = -1;
    p->hint.should = -1;
    p->resp_h = NULL;
    p->resp_nh = 0;
    p->feed_err = 0;
    p->fanned = false;
    p->fan_n = 0;
    cmx_buf_init(&p->body, MAX_RESPONSE_BODY);
    if (p->ops->prepare != NULL) {
        struct cmx_prepare_env env = {&p->w->loop, p->w->up_ops, p->w->up};
        int r = p->ops->prepare(p->dep, &env, prepared_cb, p, &p->pending);
        if (r == 1)
            return; /* prepared_cb continues */
        p->pending = NULL;
        if (r != 0) {
            prepared_cb(p, r);
            return;
        }
    }
    send_attempt(p);
}

/* Builds and starts the upstream request of the current attempt. */
static void send_attempt(struct proxy *p)
{
    const char *why = NULL;
    int r = 0;
    struct cmx_provider_req *fan_reqs = NULL;
    if (p->ops->parts != NULL)
        r = p->ops->parts(p->dep, &p->cr, &p->req->arena, &p->fan_n, &p->fan_state, &why);
    if (r == 0 && p->fan_n > 0) {
        fan_reqs = cmx_arena_calloc(&p->req->arena, p->fan_n * sizeof(*fan_reqs));
        r = fan_reqs ? 0 : CMX_ENOMEM;
        for (size_t i = 0; i < p->fan_n && r == 0; i++)
            r = p->ops->build_part(p->dep, &p->cr, p->fan_state, i, &p->req->arena, &fan_reqs[i],
                                   &why);
        p->preq = fan_reqs ? fan_reqs[0] : p->preq;
    } else if (r == 0) {
        r = p->ops->build(p->dep, &p->cr, &p->req->arena, &p->preq, &why);
    }
    if (r != 0) {
        fill_log(p);
        if (r == CMX_EINVAL)
            cmx_api_error(p->ctx, 400, "invalid_request_error", "unsupported_parameter", NULL, "%s",
                          why ? why : "The request cannot be sent to this provider.");
        else
            cmx_api_error(p->ctx, 500, "server_error", "internal_error", NULL,
                          "Could not build the upstream request: %s.", cmx_strerror(r));
        return;
    }
    const struct cmx_provider_cfg *pc = p->dep->provider;
    const struct cmx_routing_cfg *rc = &p->ctx->cfg->routing;
    uint64_t now = uv_hrtime();
    int64_t left_ms = (int64_t)((p->deadline_ns - now) / 1000000u);
    struct cmx_upstream_request ur = {
        .method = p->preq.method,
        .url = p->preq.url,
        .headers = p->preq.headers,
        .n_headers = p->preq.n_headers,
        .body = p->preq.body,
        .body_len = p->preq.body_len,
        .ca_file = pc->ca_file,
        .connect_timeout_ms = pick_timeout(p->dep->connect_timeout_ms, pc->connect_timeout_ms,
                                           rc->connect_timeout_ms),
        .first_byte_timeout_ms = pick_timeout(p->dep->first_byte_timeout_ms,
                                              pc->first_byte_timeout_ms, rc->first_byte_timeout_ms),
        .idle_timeout_ms =
            pick_timeout(p->dep->idle_timeout_ms, pc->idle_timeout_ms, rc->idle_timeout_ms),
        .total_timeout_ms = left_ms > 0 ? (int)(left_ms > 0x7fffffff ? 0x7fffffff : left_ms) : 1,
        .ud = p,
        .on_headers = on_headers,
        .on_data = on_data,
        .on_done = on_done,
    };
    if (ur.first_byte_timeout_ms > left_ms)
        ur.first_byte_timeout_ms = (int)(left_ms > 0 ? left_ms : 1);
    p->attempt_start_ns = now;
    p->attempt_open = true;
    if (p->dep->state != NULL)
        atomic_fetch_add_explicit(&p->dep->state->inflight, 1, memory_order_relaxed);
    p->ctx->state = p->dep->state;
    if (fan_reqs != NULL)
        r = cmx_fanout_start(p->w->up_ops, p->w->up, &p->req->arena, &ur, fan_reqs, p->fan_n,
                             FANOUT_CONCURRENCY, fanout_done, p, &p->fan);
    else
        r = p->w->up_ops->start(p->w->up, &ur, &p->xfer);
    if (r != 0) {
        p->xfer = NULL;
        p->last_status = 0;
        p->last_err = r;
        attempt_failed(p);
    }
}

/* The client went away: stop everything (no callback may touch p afterwards). */
static void on_abort(struct cmx_http_req *req)
{
    struct cmx_api_ctx *ctx = req->data;
    struct proxy *p = ctx->proxy;
    cancel_retry(p);
    mark_upstream_end(p);
    end_attempt(p, p->status, CMX_ECANCELED);
    release_attempt(p);
    fill_log(p);
    if (ctx->log.error == NULL)
        ctx->log.error = "client_closed_request";
    cmx_api_log(ctx, 499);
    meter(p, 499, !p->client_started);
}

/* ---- request parsing ------------------------------------------------------------------------ */

static bool get_bool(const struct cmx_json_member *m)
{
    return m != NULL && m->type == CMX_JSON_TRUE;
}

/* Reads stream_options.include_usage from the client's request. */
static bool client_wants_usage(const struct cmx_json_member *so, struct cmx_arena *a)
{
    if (so == NULL || so->type != CMX_JSON_OBJECT)
        return false;
    struct cmx_json_member m[32];
    size_t n = 0;
    enum cmx_json_type top;
    if (cmx_json_scan(so->val, so->val_len, &top, m, 32, &n) != 0)
        return false;
    return get_bool(cmx_json_find(m, n, "include_usage"));
}

/* Answers 403 when filters left no deployment: each agreement reason and when each cloud
 * may serve, then which tenant rule excluded which deployment. False when neither the
 * agreements nor the tenant excluded any (the caller answers). */
static bool deny_excluded(struct proxy *p, const struct cmx_agreement_check *chk)
{
    struct cmx_api_ctx *ctx = p->ctx;
    const struct cmx_route_excluded *ex = p->route.excluded;
    size_t n = p->route.n_excluded;
    struct cmx_buf b;
    bool agr = false, ten = false;

    cmx_buf_init(&b, 1u << 16);
    if (chk != NULL)
        agr = cmx_agreements_denial(chk, ex, n, &b) == 0;
    if (ctx->caller.tenant != NULL) {
        size_t mark = b.len;
        if (agr)
            cmx_buf_puts(&b, "; ");
        ten = cmx_tenant_denial(ctx->caller.tenant, ex, n, &b) == 0;
        if (!ten)
            b.len = mark;
    }
    if (agr || ten)
        cmx_api_error(ctx, 403, "invalid_request_error",
                      agr ? "distribution_denied" : "tenant_denied", "model", "%.*s", (int)b.len,
                      b.data ? b.data : "");
    cmx_buf_free(&b);
    return agr || ten;
}

/* max_completion_tokens, else max_tokens, else the default for budgets and limits
 * (embeddings produce no completion tokens). */
#define MAX_RESERVE_TOKENS 1000000000000LL /* 10^12: no model's, yet far from overflow */

static int64_t max_tokens_of(const struct cmx_client_req *cr)
{
    if (cr->ep == CMX_EP_EMBEDDINGS)
        return 0;
    static const char *const names[] = {"max_completion_tokens", "max_tokens"};
    for (size_t i = 0; i < 2; i++) {
        const struct cmx_json_member *m = cmx_json_find(cr->members, cr->n_members, names[i]);
        if (m == NULL || m->type != CMX_JSON_NUMBER || m->val[0] == '-')
            continue;
        int64_t v = 0;
        size_t k = 0;
        for (; k < m->val_len && k < 9 && m->val[k] >= '0' && m->val[k] <= '9'; k++)
            v = v * 10 + (m->val[k] - '0');
        if (k == m->val_len)
            return v; /* the usual case: a plain integer below 10^9 */
        /* any other number is reserved at its size, since it is forwarded as written:
         * 1000000000 and 1e9 alike, capped at MAX_RESERVE_TOKENS (a huge one can never
         * pass a budget or TPM bucket then, instead of counting as the default) */
        char buf[64];
        if (m->val_len >= sizeof(buf))
            return MAX_RESERVE_TOKENS;
        memcpy(buf, m->val, m->val_len);
        buf[m->val_len] = '\0';
        double d = strtod(buf, NULL);
        if (d >= (double)MAX_RESERVE_TOKENS)
            return MAX_RESERVE_TOKENS;
        int64_t whole = (int64_t)d;
        return whole + ((double)whole < d); /* rounded up */
    }
    return CMX_DEFAULT_MAX_TOKENS;
}

static void proxy_go(void *ud)
{
    start_attempt(ud);
}

void cmx_api_proxy(struct cmx_api_ctx *ctx, int endpoint)
{
    struct cmx_http_req *req = ctx->req;
    /* ~4 KiB of route and failure arrays are written before they are read: zero the rest */
    struct proxy *p = cmx_arena_alloc(&req->arena, sizeof(*p));
    if (p == NULL) {
        cmx_api_error(ctx, 500, "server_error", "internal_error", NULL, "Out of memory.");
        return;
    }
    memset(p, 0, offsetof(struct proxy, route));
    p->route.n = p->route.n_eligible = p->route.n_excluded = 0;
    ctx->proxy = p;
    p->ctx = ctx;
    p->req = req;
    p->w = ctx->w;
    p->cr.ep = (enum cmx_endpoint)endpoint;
    p->cr.request_id = ctx->request_id;
    cmx_buf_init(&p->out, 16u << 20);
    cmx_buf_init(&p->fixed, 16u << 20);
    p->created = cmx_time_unix_ms() / 1000;
    cmx_buf_init(&p->body, MAX_RESPONSE_BODY);
    cmx_arena_cleanup_add(&req->arena, proxy_cleanup, p);
    ctx->log.stream = false;

    /* The body is parsed as JSON whatever its Content-Type says: curl's -d sends
     * x-www-form-urlencoded, and a JSON body is what matters. */
    p->cr.body = req->body.data ? req->body.data : "";
    p->cr.body_len = req->body.len;
    p->cr.members = cmx_arena_alloc(&req->arena, CMX_MAX_MEMBERS * sizeof(*p->cr.members));
    enum cmx_json_type top;
    int r = p->cr.members ? cmx_json_scan(p->cr.body, p->cr.body_len, &top, p->cr.members,
                                          CMX_MAX_MEMBERS, &p->cr.n_members)
                          : CMX_ENOMEM;
    if (r == CMX_ETOOBIG) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_json", NULL,
                      "The request body has more than %d top-level fields.", CMX_MAX_MEMBERS);
        return;
    }
    if (r != 0 || p->cr.body_len == 0) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_json", NULL,
                      "We could not parse the JSON body of your request. The OpenAI API "
                      "expects a JSON payload.");
        return;
    }
    if (top != CMX_JSON_OBJECT) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_json", NULL,
                      "The request body must be a JSON object.");
        return;
    }
    static const char *const once[] = {"model", "stream", "stream_options"};
    for (size_t i = 0; i < 3; i++) {
        if (cmx_json_count(p->cr.members, p->cr.n_members, once[i]) > 1) {
            cmx_api_error(ctx, 400, "invalid_request_error", "invalid_json", once[i],
                          "The field '%s' appears more than once.", once[i]);
            return;
        }
    }
    const struct cmx_json_member *mm = cmx_json_find(p->cr.members, p->cr.n_members, "model");
    if (mm == NULL || mm->type != CMX_JSON_STRING) {
        cmx_api_error(ctx, 404, "invalid_request_error", "model_not_found", "model",
                      mm == NULL ? "You must provide a model parameter."
                                 : "The model parameter must be a string.");
        return;
    }
    p->cr.model = cmx_arena_alloc(&req->arena, mm->val_len);
    size_t ml = 0;
    if (p->cr.model == NULL ||
        cmx_json_string_decode(mm->val + 1, mm->val_len - 2, p->cr.model, &ml) != 0) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_json", "model",
                      "The model parameter is not a valid string.");
        return;
    }
    ctx->log.model = p->cr.model;
    if (endpoint == CMX_EP_CHAT) {
        p->cr.stream = get_bool(cmx_json_find(p->cr.members, p->cr.n_members, "stream"));
        p->cr.include_usage =
            p->cr.stream &&
            client_wants_usage(cmx_json_find(p->cr.members, p->cr.n_members, "stream_options"),
                               &req->arena);
    }
    ctx->log.stream = p->cr.stream;
    p->model = cmx_config_find_model(ctx->cfg, p->cr.model, ml);
    if (p->model == NULL) {
        cmx_api_error(ctx, 404, "invalid_request_error", "model_not_found", "model",
                      "The model '%s' does not exist or you do not have access to it.",
                      p->cr.model);
        return;
    }
    if (!cmx_admit_model(ctx, p->model->name))
        return;
    struct cmx_route_input in = {
        .cfg = ctx->cfg,
        .model = p->model,
        .worker = p->w->id,
        .rr = p->w->rr++,
        .rnd = cmx_worker_rand(p->w),
        .now_ms = cmx_mono_ms(),
    };
    /* distribution agreements drop the deployments their terms do not allow */
    struct cmx_agreement_check *chk = NULL;
    if (ctx->cfg->agreements != NULL) {
        chk = cmx_arena_calloc(&req->arena, sizeof(*chk));
        if (chk != NULL) {
            chk->cfg = ctx->cfg;
            chk->model = p->model;
            chk->caps = cmx_caps_from_request(endpoint == CMX_EP_CHAT ? 0 : 1, p->cr.body,
                                              p->cr.body_len, p->cr.members, p->cr.n_members);
            chk->now_ms = cmx_clock_now_ms();
            chk->arena = &req->arena;
            in.filters[0] = cmx_agreements_filter;
            in.filter_ud[0] = chk;
        }
    }
    /* the tenant's clouds and regions; its preferred clouds first */
    const struct cmx_tenant_cfg *tenant = ctx->caller.tenant;
    if (tenant != NULL) {
        size_t f = in.filters[0] != NULL;
        in.filters[f] = cmx_tenant_filter;
        in.filter_ud[f] = (void *)tenant;
        if (tenant->n_preferred_clouds > 0) {
            in.rank = cmx_tenant_cloud_rank;
            in.rank_ud = tenant;
        }
    }
    const struct cmx_http_header *rh = cmx_http_find_header(req, "x-cloudmux-route");
    if (rh != NULL)
        in.route = cmx_arena_strndup(&req->arena, rh->value, rh->value_len);
    char *bad = NULL;
    if (cmx_router_plan(&in, &p->route, &bad) != 0) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_route", "x-cloudmux-route",
                      "x-cloudmux-route names '%s', which is not a provider of model '%s'.",
                      bad ? bad : "", p->model->name);
        return;
    }
    if (p->route.n == 0 && p->route.n_excluded > 0 && deny_excluded(p, chk))
        return;
    p->agreements = chk;
    if (p->route.n == 0) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_route", "x-cloudmux-route",
                      "x-cloudmux-route leaves no deployment of model '%s' to try.",
                      p->model->name);
        return;
    }
    p->deadline_ns = req->start_ns + (uint64_t)ctx->cfg->routing.timeout_s * 1000000000ull;
    req->on_abort = on_abort;
    /* rate limits and budgets: the worst case over the deployments it may reach */
    int64_t max_out = max_tokens_of(&p->cr);
    int64_t prompt = cmx_budget_prompt_estimate(p->cr.body_len);
    int64_t worst = 0;
    for (size_t i = 0; i < p->route.n; i++) {
        const struct cmx_deployment_cfg *d = p->route.order[i];
        if (d->has_price) {
            int64_t c = cmx_budget_worst_case(&d->price, prompt, max_out);
            worst = c > worst ? c : worst;
        }
    }
    cmx_admit_quota(ctx, prompt + max_out, worst, proxy_go, p);
}
