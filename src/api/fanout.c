/* Fan-out of one attempt into several upstream requests (see fanout.h). */
#include "api/fanout.h"
#include "core/err.h"

#include <string.h>

#define PART_MAX_BODY (16u << 20)

struct part {
    struct cmx_fanout *f;        /* owner */
    struct cmx_upstream_xfer *x; /* in flight, NULL otherwise */
    int status;                  /* from on_headers */
    struct cmx_http_header *h;   /* response headers (arena copies) */
    size_t nh;
    struct cmx_buf body; /* response body */
};

struct cmx_fanout {
    const struct cmx_upstream_ops *ops;
    struct cmx_upstream *up;
    struct cmx_arena *a;
    struct cmx_upstream_request tmpl; /* timeouts etc. */
    const struct cmx_provider_req *reqs;
    struct part *parts;
    struct cmx_part_answer *answers;
    size_t n, next, done_n, running;
    bool finished; /* done was called */
    cmx_fanout_done_cb done;
    void *ud;
};

static int part_headers(void *ud, int status, const struct cmx_http_header *h, size_t n)
{
    struct part *p = ud;
    p->status = status;
    p->h = cmx_arena_alloc(p->f->a, (n ? n : 1) * sizeof(*p->h));
    if (p->h == NULL)
        return CMX_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        p->h[i].name = cmx_arena_strndup(p->f->a, h[i].name, h[i].name_len);
        p->h[i].value = cmx_arena_strndup(p->f->a, h[i].value, h[i].value_len);
        if (p->h[i].name == NULL || p->h[i].value == NULL)
            return CMX_ENOMEM;
        p->h[i].name_len = h[i].name_len;
        p->h[i].value_len = h[i].value_len;
    }
    p->nh = n;
    return 0;
}

static int part_data(void *ud, const char *data, size_t len)
{
    struct part *p = ud;
    return cmx_buf_append(&p->body, data, len);
}

static void part_done(void *ud, int err, bool first_byte);

static int start_part(struct cmx_fanout *f, size_t i)
{
    struct part *p = &f->parts[i];
    const struct cmx_provider_req *r = &f->reqs[i];
    struct cmx_upstream_request ur = f->tmpl;
    ur.method = r->method;
    ur.url = r->url;
    ur.headers = r->headers;
    ur.n_headers = r->n_headers;
    ur.body = r->body;
    ur.body_len = r->body_len;
    ur.ud = p;
    ur.on_headers = part_headers;
    ur.on_data = part_data;
    ur.on_done = part_done;
    int rc = f->ops->start(f->up, &ur, &p->x);
    if (rc != 0)
        p->x = NULL;
    else
        f->running++;
    return rc;
}

static void cancel_all(struct cmx_fanout *f)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->parts[i].x != NULL) {
            f->ops->cancel(f->parts[i].x);
            f->parts[i].x = NULL;
        }
    }
    f->running = 0;
}

static void finish(struct cmx_fanout *f, const struct cmx_fanout_result *r)
{
    f->finished = true;
    cancel_all(f);
    f->done(f->ud, r); /* may free f */
}

static void part_done(void *ud, int err, bool first_byte)
{
    (void)first_byte;
    struct part *p = ud;
    struct cmx_fanout *f = p->f;
    p->x = NULL;
    f->running--;
    if (f->finished)
        return;
    if (err != 0 || p->status < 200 || p->status >= 300) {
        struct cmx_fanout_result r = {
            .err = err,
            .status = err ? 0 : p->status,
            .headers = p->h,
            .n_headers = p->nh,
            .body = p->body.data ? p->body.data : "",
            .len = p->body.len,
        };
        finish(f, &r);
        return;
    }
    size_t i = (size_t)(p - f->parts);
    f->answers[i] =
        (struct cmx_part_answer){p->body.data ? p->body.data : "", p->body.len, p->h, p->nh};
    if (++f->done_n == f->n) {
        struct cmx_fanout_result r = {.status = p->status};
        finish(f, &r);
        return;
    }
    while (f->next < f->n && !f->finished) {
        size_t k = f->next++;
        int rc = start_part(f, k);
        if (rc != 0) {
            struct cmx_fanout_result r = {.err = rc};
            finish(f, &r);
            return;
        }
        break;
    }
}

int cmx_fanout_start(const struct cmx_upstream_ops *ops, struct cmx_upstream *up,
                     struct cmx_arena *a, const struct cmx_upstream_request *tmpl,
                     const struct cmx_provider_req *parts, size_t n, size_t concurrency,
                     cmx_fanout_done_cb done, void *ud, struct cmx_fanout **out)
{
    if (n == 0)
        return CMX_EINVAL;
    struct cmx_fanout *f = cmx_arena_calloc(a, sizeof(*f));
    if (f == NULL || (f->parts = cmx_arena_calloc(a, n * sizeof(*f->parts))) == NULL ||
        (f->answers = cmx_arena_calloc(a, n * sizeof(*f->answers))) == NULL)
        return CMX_ENOMEM;
    f->ops = ops;
    f->up = up;
    f->a = a;
    f->tmpl = *tmpl;
    f->reqs = parts;
    f->n = n;
    f->done = done;
    f->ud = ud;
    for (size_t i = 0; i < n; i++) {
        f->parts[i].f = f;
        cmx_buf_init(&f->parts[i].body, PART_MAX_BODY);
    }
    if (concurrency == 0)
        concurrency = 1;
    while (f->next < n && f->next < concurrency) {
        int rc = start_part(f, f->next++);
        if (rc != 0) {
            f->finished = true;
            cmx_fanout_free(f);
            return rc;
        }
    }
    *out = f;
    return 0;
}

const struct cmx_part_answer *cmx_fanout_answers(const struct cmx_fanout *f)
{
    return f->answers;
}

void cmx_fanout_free(struct cmx_fanout *f)
{
    if (f == NULL)
        return;
    f->finished = true;
    cancel_all(f);
    for (size_t i = 0; i < f->n; i++)
        cmx_buf_free(&f->parts[i].body);
}
