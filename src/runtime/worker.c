#include "runtime/worker.h"
#include "api/admit.h"
#include "api/api.h"
#include "core/err.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t cmx_worker_rand(struct cmx_worker *w)
{
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return w->rng[1] + s0;
}

static void flush_cb(uv_prepare_t *h)
{
    struct cmx_worker *w = h->data;
    cmx_admit_flush(w->limits); /* settlements of this iteration's requests, in one call */
    if (w->log.buf.len > 0)
        cmx_accesslog_flush(&w->log);
}

static void closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void upstream_gone_cb(void *arg)
{
    struct cmx_worker *w = arg;
    w->up = NULL;
    uv_close((uv_handle_t *)&w->wake, closed_cb);
    uv_close((uv_handle_t *)&w->flush, closed_cb);
    uv_close((uv_handle_t *)&w->drain_timer, closed_cb);
}

static void shut_down(struct cmx_worker *w)
{
    if (w->shut)
        return;
    w->shut = true;
    if (w->http != NULL) {
        cmx_http_server_close(w->http);
        w->http = NULL;
    }
    if (w->limits != NULL) { /* after the requests: their settlements go out first */
        cmx_admit_flush(w->limits);
        cmx_limits_client_close(w->limits);
        w->limits = NULL;
    }
    if (w->up != NULL)
        w->up_ops->destroy(w->up, upstream_gone_cb, w);
}

static void drained_cb(void *arg)
{
    struct cmx_worker *w = arg;
    uv_timer_stop(&w->drain_timer);
    shut_down(w);
}

static void drain_timeout_cb(uv_timer_t *t)
{
    struct cmx_worker *w = t->data;
    cmx_log(CMX_LOG_WARN, "worker %d: drain timeout, aborting %zu request(s) in flight", w->id,
            w->http ? cmx_http_server_inflight(w->http) : (size_t)0);
    shut_down(w);
}

static void pick_up_config(struct cmx_worker *w)
{
    struct cmx_config *next = atomic_exchange(&w->next_cfg, NULL);
    if (next != NULL) {
        /* requests in flight hold their own reference to the old snapshot */
        cmx_config_unref(w->cfg);
        w->cfg = next;
    }
}

static void wake_cb(uv_async_t *h)
{
    struct cmx_worker *w = h->data;
    pick_up_config(w);
    if (atomic_load(&w->cmd_drain) && !w->stopping) {
        w->stopping = true;
        int ms = w->cfg->server.drain_timeout_s * 1000;
        uv_timer_start(&w->drain_timer, drain_timeout_cb, (uint64_t)(ms > 0 ? ms : 1), 0);
        cmx_http_server_drain(w->http, drained_cb, w);
    }
}

static void worker_main(void *arg)
{
    struct cmx_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
}

int cmx_worker_start(struct cmx_worker *w, struct cmx_runtime *rt, int id, struct cmx_config *cfg)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->rt = rt;
    w->cfg = cmx_config_ref(cfg);
    atomic_init(&w->next_cfg, NULL);
    atomic_init(&w->cmd_drain, 0);
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng)) {
        w->rng[0] = (uint64_t)uv_hrtime() ^ (uint64_t)getpid();
        w->rng[1] = (uint64_t)id * 0x9e3779b97f4a7c15ull + 1;
    }
    int r = uv_loop_init(&w->loop);
    if (r != 0)
        return r;
    uv_async_init(&w->loop, &w->wake, wake_cb);
    w->wake.data = w;
    uv_prepare_init(&w->loop, &w->flush);
    w->flush.data = w;
    uv_prepare_start(&w->flush, flush_cb);
    uv_unref((uv_handle_t *)&w->flush);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    cmx_accesslog_init(&w->log, STDOUT_FILENO, cfg->server.access_log);
    /* CLOUDMUX_UPSTREAM=curl|h1 picks the upstream client; h1 (which leaves https to curl)
     * unless told otherwise */
    const char *up = getenv("CLOUDMUX_UPSTREAM");
    w->up_ops = up != NULL && strcmp(up, "curl") == 0 ? &cmx_upstream_curl : &cmx_upstream_h1;
    r = w->up_ops->create(&w->loop, &w->up);
    if (r == 0 && rt->limits != NULL)
        r = cmx_limits_client_new(rt->limits, &w->loop, &w->limits);
    if (r == 0) {
        struct cmx_http_limits lim = {
            .max_header_bytes = cfg->server.max_header_bytes,
            .max_body_bytes = cfg->server.max_body_bytes,
            .header_timeout_ms = cfg->server.header_timeout_ms,
            .body_timeout_ms = cfg->server.body_timeout_ms,
            .keepalive_timeout_ms = cfg->server.keepalive_timeout_ms,
        };
        r = cmx_http_server_start(&w->loop, rt->listen_host, rt->listen_port, &lim, cmx_api_handle,
                                  w, &w->http);
        if (r == 0)
            cmx_http_server_on_reject(w->http, cmx_api_reject);
    }
    if (r != 0) {
        w->http = NULL;
        shut_down(w);
        if (w->up == NULL)
            upstream_gone_cb(w);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        cmx_accesslog_free(&w->log);
        cmx_config_unref(w->cfg);
        w->cfg = NULL;
        return r;
    }
    r = uv_thread_create(&w->thread, worker_main, w);
    return r;
}

void cmx_worker_drain(struct cmx_worker *w)
{
    atomic_store(&w->cmd_drain, 1);
    uv_async_send(&w->wake);
}

void cmx_worker_reload(struct cmx_worker *w, struct cmx_config *cfg)
{
    struct cmx_config *old = atomic_exchange(&w->next_cfg, cfg);
    if (old != NULL)
        cmx_config_unref(old);
    uv_async_send(&w->wake);
}

void cmx_worker_join(struct cmx_worker *w)
{
    uv_thread_join(&w->thread);
    cmx_accesslog_free(&w->log);
    pick_up_config(w);
    cmx_config_unref(w->cfg);
    w->cfg = NULL;
}
