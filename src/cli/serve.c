/* cloudmux serve: load the config, start the workers, handle signals. */
#include "cli/cli.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "ledger/ledger.h"
#include "keys/refresher.h"
#include "router/health.h"
#include "router/router.h"
#include "runtime/worker.h"
#include "upstream/upstream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct serve {
    const char *config_path;
    struct cmx_runtime rt;
    char limits_desc[512]; /* the running limits backend, as cmx_limits_config_describe() */
    uv_loop_t *loop;
    uv_signal_t sigterm, sigint, sighup;
    bool stopping;
    bool listen_overridden;          /* --listen given: the file's listen is not used */
    const char *ledger_url;          /* the running ledger's url, NULL when off */
    struct cmx_keys_refresher *keys; /* distributes keys and stored tenants; NULL: ledger off */
};

static int parse_listen(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0')
        return CMX_EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return CMX_EINVAL;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    *host = strndup(h, hl);
    *port = (int)p;
    return *host ? 0 : CMX_ENOMEM;
}

static void stop_signals(struct serve *s)
{
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct serve *s = h->data;
    if (s->stopping)
        return;
    s->stopping = true;
    cmx_log(CMX_LOG_INFO, "%s received: draining in-flight requests",
            signum == SIGTERM ? "SIGTERM" : "SIGINT");
    atomic_store(&s->rt.draining, true);
    for (int i = 0; i < s->rt.n_workers; i++)
        cmx_worker_drain(&s->rt.workers[i]);
    /* a second signal gets the default action: stop at once */
    stop_signals(s);
}

static void on_reload_signal(uv_signal_t *h, int signum)
{
    struct serve *s = h->data;
    struct cmx_config_diag diag;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&diag);
    int r = cmx_config_load(s->config_path, &cfg, &diag);
    if (r != 0) {
        cmx_log(CMX_LOG_ERROR, "reload of %s failed; keeping the running config:\n%s",
                s->config_path, diag.text.data ? diag.text.data : cmx_strerror(r));
        cmx_config_diag_free(&diag);
        return;
    }
    if (diag.text.len > 0)
        cmx_log(CMX_LOG_WARN, "%s", diag.text.data);
    cmx_config_diag_free(&diag);
    if (cmx_router_attach(cfg) != 0) {
        cmx_log(CMX_LOG_ERROR, "reload of %s failed: out of memory", s->config_path);
        cmx_config_unref(cfg);
        return;
    }
    if (!s->listen_overridden &&
        (strcmp(cfg->listen_host, s->rt.listen_host) != 0 || cfg->listen_port != s->rt.listen_port))
        cmx_log(CMX_LOG_WARN, "reload: a new listen address takes a restart; keeping %s:%d",
                s->rt.listen_host, s->rt.listen_port);
    char desc[sizeof(s->limits_desc)];
    cmx_limits_config_describe(&cfg->limits, desc, sizeof(desc));
    if (strcmp(desc, s->limits_desc) != 0)
        cmx_log(CMX_LOG_WARN, "reload: a new limits backend (%s) takes a restart; keeping %s", desc,
                s->limits_desc);
    /* the ledger: what is queued is committed before the swap; its url is kept */
    char new_url[4096];
    const char *ou = s->ledger_url;
    const char *nu = cmx_ledger_url(cfg, new_url, sizeof(new_url));
    if ((ou == NULL) != (nu == NULL) || (ou != NULL && strcmp(ou, nu) != 0))
        cmx_log(CMX_LOG_WARN, "reload: a new ledger url takes a restart; keeping the running one");
    cmx_ledger_flush_global();
    cmx_keys_refresher_set_config(s->keys, cfg);
    for (int i = 0; i < s->rt.n_workers; i++)
        cmx_worker_reload(&s->rt.workers[i], cmx_config_ref(cfg));
    cmx_config_unref(cfg);
    cmx_log(CMX_LOG_INFO, "config reloaded from %s", s->config_path);
}

int cmx_cli_serve(int argc, char **argv)
{
    const char *listen = NULL, *pidfile = NULL;
    int workers = -1;
    struct serve s;
    memset(&s, 0, sizeof(s));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) && v) {
            s.config_path = v;
            i++;
        } else if (strcmp(a, "--listen") == 0 && v) {
            listen = v;
            i++;
        } else if (strcmp(a, "--now") == 0 && v) {
            int64_t ms;
            bool is_date;
            if (cmx_clock_parse_iso(v, strlen(v), &ms, &is_date) != 0 || ms < 0) {
                fprintf(stderr, "cloudmux serve: --now needs an ISO-8601 date or time (UTC)\n");
                return 2;
            }
            cmx_clock_freeze((uint64_t)ms);
            i++;
        } else if (strcmp(a, "--pidfile") == 0 && v) {
            pidfile = v;
            i++;
        } else if (strcmp(a, "--workers") == 0 && v) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end != '\0' || n < 0 || n > 1024) {
                fprintf(stderr, "cloudmux serve: --workers needs a number from 0 to 1024\n");
                return 2;
            }
            workers = (int)n;
            i++;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(cmx_cli_usage("serve"), stdout);
            return 0;
        } else {
            fprintf(stderr, "cloudmux serve: unexpected argument '%s'\n%s", a,
                    cmx_cli_usage("serve"));
            return 2;
        }
    }
    if (s.config_path == NULL) {
        fprintf(stderr, "cloudmux serve: --config FILE is required\n%s", cmx_cli_usage("serve"));
        return 2;
    }
    const char *lv = getenv("CLOUDMUX_LOG");
    if (lv != NULL && strcmp(lv, "debug") == 0)
        cmx_log_min = CMX_LOG_DEBUG;

    struct cmx_config_diag diag;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&diag);
    int r = cmx_config_load(s.config_path, &cfg, &diag);
    if (diag.text.len > 0)
        fputs(diag.text.data, stderr);
    cmx_config_diag_free(&diag);
    if (r != 0) {
        fprintf(stderr, "cloudmux serve: %s is not a valid configuration\n", s.config_path);
        return 1;
    }
    if (cmx_router_attach(cfg) != 0) {
        fprintf(stderr, "cloudmux serve: out of memory\n");
        cmx_config_unref(cfg);
        return 1;
    }
    char *host = NULL;
    int port = cfg->listen_port;
    if (listen != NULL) {
        s.listen_overridden = true;
        if (parse_listen(listen, &host, &port) != 0) {
            fprintf(stderr, "cloudmux serve: --listen needs HOST:PORT, got '%s'\n", listen);
            cmx_config_unref(cfg);
            return 2;
        }
    } else {
        host = strdup(cfg->listen_host);
    }
    if (workers < 0)
        workers = cfg->workers;
    if (workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        workers = n > 0 ? (int)n : 1;
    }
    if (workers > CMX_MAX_WORKERS) {
        fprintf(stderr, "cloudmux serve: at most %d workers; using %d\n", CMX_MAX_WORKERS,
                CMX_MAX_WORKERS);
        workers = CMX_MAX_WORKERS;
    }
    signal(SIGPIPE, SIG_IGN);
    /* the ledger: every request that reached an upstream is metered (src/ledger/) */
    struct cmx_ledger *ledger = NULL;
    char lurl[4096], lspool[4096], lerr[512];
    if (cmx_ledger_url(cfg, lurl, sizeof(lurl)) != NULL) {
        enum cmx_ledger_durability dur =
            cfg->ledger_durability != NULL && strcmp(cfg->ledger_durability, "per_request") == 0
                ? CMX_LEDGER_PER_REQUEST
                : CMX_LEDGER_BATCHED;
        cmx_ledger_spool_path(cfg, lurl, lspool, sizeof(lspool));
        if (cmx_ledger_start(lurl, dur, lspool, &ledger, lerr, sizeof(lerr)) != 0) {
            fprintf(stderr, "cloudmux serve: %s\n", lerr);
            cmx_config_unref(cfg);
            free(host);
            return 1;
        }
        cmx_ledger_set_global(ledger);
        s.ledger_url = lurl;
        /* virtual keys and stored tenants live in the ledger database: every instance polls
         * it (src/keys/refresher.h) */
        if (cmx_keys_refresher_start(lurl, cfg, 250, &s.keys, lerr, sizeof(lerr)) != 0) {
            fprintf(stderr, "cloudmux serve: %s\n", lerr);
            cmx_ledger_set_global(NULL);
            cmx_ledger_stop(ledger);
            cmx_config_unref(cfg);
            free(host);
            return 1;
        }
    }
    if (cmx_upstream_global_init() != 0) {
        fprintf(stderr, "cloudmux serve: libcurl initialisation failed\n");
        cmx_keys_refresher_stop(s.keys);
        cmx_ledger_set_global(NULL);
        cmx_ledger_stop(ledger);
        cmx_config_unref(cfg);
        free(host);
        return 1;
    }
    if (cmx_limits_new(&cfg->limits, &s.rt.limits) != 0) {
        fprintf(stderr, "cloudmux serve: cannot set up the rate limiter\n");
        cmx_keys_refresher_stop(s.keys);
        cmx_config_unref(cfg);
        free(host);
        return 1;
    }
    s.limits_desc[0] = '\0';
    cmx_limits_config_describe(&cfg->limits, s.limits_desc, sizeof(s.limits_desc));
    s.rt.listen_host = host;
    s.rt.listen_port = port;
    s.rt.started_unix = (uint64_t)time(NULL);
    s.rt.workers = calloc((size_t)workers, sizeof(*s.rt.workers));
    int rc = 0;
    int started = 0;
    for (; started < workers; started++) {
        r = cmx_worker_start(&s.rt.workers[started], &s.rt, started, cfg);
        if (r != 0) {
            fprintf(stderr, "cloudmux serve: cannot listen on %s:%d: %s\n", host, port,
                    r < -900 ? cmx_strerror(r) : uv_strerror(r));
            rc = 1;
            break;
        }
    }
    s.rt.n_workers = started;
    s.loop = uv_default_loop();
    uv_signal_init(s.loop, &s.sigterm);
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sighup);
    s.sigterm.data = s.sigint.data = s.sighup.data = &s;
    if (rc == 0) {
        uv_signal_start(&s.sigterm, on_stop_signal, SIGTERM);
        uv_signal_start(&s.sigint, on_stop_signal, SIGINT);
        uv_signal_start(&s.sighup, on_reload_signal, SIGHUP);
        if (pidfile != NULL) {
            FILE *f = fopen(pidfile, "w");
            if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0)
                cmx_log(CMX_LOG_WARN, "cannot write pid file %s", pidfile);
            if (f != NULL)
                fclose(f);
        }
        atomic_store(&s.rt.ready, true);
        cmx_log(CMX_LOG_INFO, "cloudmux %s listening on %s:%d with %d worker%s (config %s)",
                CMX_VERSION, host, port, workers, workers == 1 ? "" : "s", s.config_path);
        uv_run(s.loop, UV_RUN_DEFAULT);
    } else {
        atomic_store(&s.rt.draining, true);
        for (int i = 0; i < started; i++)
            cmx_worker_drain(&s.rt.workers[i]);
        stop_signals(&s);
        uv_run(s.loop, UV_RUN_DEFAULT);
    }
    for (int i = 0; i < started; i++)
        cmx_worker_join(&s.rt.workers[i]);
    /* every request is done: drain the ledger's queue before exit */
    cmx_ledger_set_global(NULL);
    cmx_ledger_stop(ledger);
    cmx_keys_refresher_stop(s.keys);
    uv_loop_close(s.loop);
    if (rc == 0 && pidfile != NULL)
        unlink(pidfile);
    if (rc == 0)
        cmx_log(CMX_LOG_INFO, "cloudmux stopped");
    free(s.rt.workers);
    cmx_limits_free(s.rt.limits);
    free(host);
    cmx_config_unref(cfg);
    cmx_dep_states_free();
    return rc;
}
