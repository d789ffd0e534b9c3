/* Incremental server-sent-events parser (see sse.h). Each chunk is cut into lines with
 * memchr; a line that lies wholly inside the chunk is interpreted in place, and only the
 * tail of a chunk that ends mid-line is copied into p->line. Field values are appended to
 * the event buffers as whole spans.
 *
 * Choices the header leaves open: an event's "id" is reset with the event (the header's
 * "" when absent) rather than kept as WHATWG's last-event-ID; an id containing NUL is
 * ignored as WHATWG says; "retry" is ignored. finish() also interprets a last line that
 * has no line end. After feed() returns non-zero the rest of that chunk is dropped and
 * the parser should only be freed. */
#include "codec/sse.h"
#include "core/err.h"

#include <string.h>

static const char bom[3] = {'\xef', '\xbb', '\xbf'};

void cmx_sse_parser_init(struct cmx_sse_parser *p, size_t max_event)
{
    cmx_buf_init(&p->line, max_event);
    cmx_buf_init(&p->data, max_event);
    cmx_buf_init(&p->event, max_event);
    cmx_buf_init(&p->id, max_event);
    p->has_data = false;
    p->skip_lf = false;
    p->bom_checked = false;
    p->max_event = max_event;
}

void cmx_sse_parser_free(struct cmx_sse_parser *p)
{
    cmx_buf_free(&p->line);
    cmx_buf_free(&p->data);
    cmx_buf_free(&p->event);
    cmx_buf_free(&p->id);
}

static void reset_event(struct cmx_sse_parser *p)
{
    cmx_buf_reset(&p->data);
    cmx_buf_reset(&p->event);
    cmx_buf_reset(&p->id);
    p->has_data = false;
}

static const char *buf_str(const struct cmx_buf *b)
{
    return b->data != NULL ? b->data : "";
}

/* Dispatches the event being built if it has data, then starts a new one. */
static int dispatch(struct cmx_sse_parser *p, cmx_sse_event_cb cb, void *ud)
{
    int r = 0;
    if (p->has_data) {
        struct cmx_sse_event ev = {
            .event = buf_str(&p->event),
            .event_len = p->event.len,
            .data = buf_str(&p->data),
            .data_len = p->data.len,
            .id = buf_str(&p->id),
            .id_len = p->id.len,
        };
        r = cb(ud, &ev);
    }
    reset_event(p);
    return r;
}

static int set_field(struct cmx_buf *b, const char *v, size_t n)
{
    cmx_buf_reset(b);
    return cmx_buf_append(b, v, n);
}

/* Interprets one complete line (without its terminator). */
static int process_line(struct cmx_sse_parser *p, const char *s, size_t n, cmx_sse_event_cb cb,
                        void *ud)
{
    const char *colon, *v;
    size_t flen, vlen;
    int r;

    if (n == 0)
        return dispatch(p, cb, ud);
    if (s[0] == ':')
        return 0; /* comment, e.g. ":ping" keep-alives */
    colon = memchr(s, ':', n);
    if (colon != NULL) {
        flen = (size_t)(colon - s);
        v = colon + 1;
        vlen = n - flen - 1;
        if (vlen > 0 && *v == ' ') {
            v++;
            vlen--;
        }
    } else {
        flen = n; /* a line with no colon is a field name with an empty value */
        v = s + n;
        vlen = 0;
    }

    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        if (p->has_data && (r = cmx_buf_append(&p->data, "\n", 1)) != 0)
            return r;
        p->has_data = true;
        return cmx_buf_append(&p->data, v, vlen);
    }
    if (flen == 5 && memcmp(s, "event", 5) == 0)
        return set_field(&p->event, v, vlen);
    if (flen == 2 && memcmp(s, "id", 2) == 0) {
        /* WHATWG: an id containing NUL is ignored. */
        if (vlen > 0 && memchr(v, '\0', vlen) != NULL)
            return 0;
        return set_field(&p->id, v, vlen);
    }
    return 0; /* "retry" and unknown fields: nothing for a proxy to do */
}

/* Consumes the leading bytes that may be a UTF-8 BOM, possibly split across chunks, by
 * keeping the matched prefix in p->line. Returns how many input bytes were taken. */
static size_t eat_bom(struct cmx_sse_parser *p, const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && p->line.len < sizeof(bom)) {
        if (buf[i] != bom[p->line.len]) {
            /* Not a BOM: the bytes kept so far start the first line as they are. */
            p->bom_checked = true;
            return i;
        }
        /* Fails only when max_event < 3; the bytes then take the normal path, which
         * reports the cap. */
        if (cmx_buf_append(&p->line, buf + i, 1) != 0) {
            p->bom_checked = true;
            return i;
        }
        i++;
    }
    if (p->line.len == sizeof(bom)) {
        cmx_buf_reset(&p->line);
        p->bom_checked = true;
    }
    return i;
}

int cmx_sse_parser_feed(struct cmx_sse_parser *p, const char *buf, size_t len, cmx_sse_event_cb cb,
                        void *ud)
{
    const char *s, *end, *cr, *lf;
    int r;

    if (len == 0)
        return 0;
    if (!p->bom_checked) {
        size_t k = eat_bom(p, buf, len);
        buf += k;
        len -= k;
        if (len == 0)
            return 0;
    }
    s = buf;
    end = buf + len;
    if (p->skip_lf) {
        p->skip_lf = false;
        if (*s == '\n' && ++s == end)
            return 0;
    }

    /* The next CR and LF are looked up once each and reused until passed, so every byte
     * is scanned by at most one memchr per terminator kind. */
    cr = memchr(s, '\r', (size_t)(end - s));
    lf = memchr(s, '\n', (size_t)(end - s));
    if (cr == NULL)
        cr = end;
    if (lf == NULL)
        lf = end;
    for (;;) {
        if (cr < s && (cr = memchr(s, '\r', (size_t)(end - s))) == NULL)
            cr = end;
        if (lf < s && (lf = memchr(s, '\n', (size_t)(end - s))) == NULL)
            lf = end;
        const char *eol = cr < lf ? cr : lf;
        if (eol == end)
            return cmx_buf_append(&p->line, s, (size_t)(end - s));

        size_t n = (size_t)(eol - s);
        if (p->line.len > 0) {
            if ((r = cmx_buf_append(&p->line, s, n)) != 0)
                return r;
            r = process_line(p, p->line.data, p->line.len, cb, ud);
            cmx_buf_reset(&p->line);
        } else if (n > p->max_event) {
            return CMX_ETOOBIG;
        } else {
            r = process_line(p, s, n, cb, ud);
        }
        if (r != 0)
            return r;

        s = eol + 1;
        if (*eol == '\r') {
            if (s == end) {
                p->skip_lf = true; /* a CRLF may be split across chunks */
                return 0;
            }
            if (*s == '\n')
                s++;
        }
        if (s == end)
            return 0;
    }
}

int cmx_sse_parser_finish(struct cmx_sse_parser *p, cmx_sse_event_cb cb, void *ud)
{
    int r = 0;

    /* A last line with no terminator still counts: "data: [DONE]" then close is common. */
    if (p->line.len > 0) {
        r = process_line(p, p->line.data, p->line.len, cb, ud);
        cmx_buf_reset(&p->line);
    }
    if (r == 0)
        r = dispatch(p, cb, ud);
    reset_event(p);
    p->skip_lf = false;
    p->bom_checked = false;
    return r;
}
