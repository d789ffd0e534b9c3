/* Anthropic Messages API (type: anthropic): POST {base}/v1/messages with x-api-key and
 * anthropic-version: 2023-06-01. The OpenAI request is translated (system, images, tools,
 * tool results), answers and named SSE events are translated back. */
#include "providers/provider.h"
#include "providers/translate_int.h"
#include "codec/sse.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAM_EVENT (8u << 20)
#define MAX_BLOCKS       1024

/* ---- request --------------------------------------------------------------------------- */

/* Appends a block to the last message when it has role, else starts a new message. */
static void push_block(json_object *msgs, const char *role, json_object *block)
{
    size_t n = json_object_array_length(msgs);
    json_object *last = n ? json_object_array_get_idx(msgs, n - 1) : NULL;
    const char *lr = cmx_tr_str(last, "role");
    if (last == NULL || lr == NULL || strcmp(lr, role) != 0) {
        last = json_object_new_object();
        json_object_object_add(last, "role", json_object_new_string(role));
        json_object_object_add(last, "content", json_object_new_array());
        json_object_array_add(msgs, last);
    }
    json_object_array_add(cmx_tr_get(last, "content"), block);
}

static json_object *text_block(const char *t)
{
    json_object *b = json_object_new_object();
    json_object_object_add(b, "type", json_object_new_string("text"));
    json_object_object_add(b, "text", json_object_new_string(t));
    return b;
}

/* One OpenAI content part as an Anthropic block; NULL for parts it cannot carry. */
static json_object *part_block(json_object *part, struct cmx_arena *a, const char **why)
{
    const char *type = cmx_tr_str(part, "type");
    if (type != NULL && strcmp(type, "text") == 0) {
        const char *t = cmx_tr_str(part, "text");
        return t != NULL ? text_block(t) : NULL;
    }
    if (type != NULL && strcmp(type, "image_url") == 0) {
        json_object *iu = cmx_tr_get(part, "image_url");
        const char *url = iu && json_object_is_type(iu, json_type_string)
                              ? json_object_get_string(iu)
                              : cmx_tr_str(iu, "url");
        if (url == NULL) {
            *why = "An image_url part has no url.";
            return NULL;
        }
        json_object *src = json_object_new_object();
        char *mime, *data;
        if (cmx_tr_data_url(url, a, &mime, &data)) {
            json_object_object_add(src, "type", json_object_new_string("base64"));
            json_object_object_add(src, "media_type", json_object_new_string(mime));
            json_object_object_add(src, "data", json_object_new_string(data));
        } else {
            json_object_object_add(src, "type", json_object_new_string("url"));
            json_object_object_add(src, "url", json_object_new_string(url));
        }
        json_object *b = json_object_new_object();
        json_object_object_add(b, "type", json_object_new_string("image"));
        json_object_object_add(b, "source", src);
        return b;
    }
    *why = "This provider accepts only text and image_url content parts.";
    return NULL;
}

static int add_content(json_object *msgs, const char *role, json_object *content,
                       struct cmx_arena *a, const char **why)
{
    if (content == NULL || json_object_is_type(content, json_type_null))
        return 0;
    if (json_object_is_type(content, json_type_string)) {
        if (json_object_get_string_len(content) > 0)
            push_block(msgs, role, text_block(json_object_get_string(content)));
        return 0;
    }
    if (!json_object_is_type(content, json_type_array)) {
        *why = "A message's content must be a string or an array of parts.";
        return CMX_EINVAL;
    }
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *part = json_object_array_get_idx(content, i);
        const char *type = cmx_tr_str(part, "type"), *t = cmx_tr_str(part, "text");
        if (type != NULL && strcmp(type, "text") == 0 && t != NULL && t[0] == '\0')
            continue; /* Anthropic refuses empty text blocks; dropped like an empty content */
        json_object *b = part_block(part, a, why);
        if (b == NULL)
            return CMX_EINVAL;
        push_block(msgs, role, b);
    }
    return 0;
}

static json_object *tool_choice_of(json_object *tc, json_object *ptc)
{
    json_object *out = NULL;
    if (tc != NULL && json_object_is_type(tc, json_type_string)) {
        const char *s = json_object_get_string(tc);
        out = json_object_new_object();
        json_object_object_add(out, "type",
                               json_object_new_string(strcmp(s, "required") == 0 ? "any"
                                                      : strcmp(s, "none") == 0   ? "none"
                                                                                 : "auto"));
    } else if (tc != NULL && json_object_is_type(tc, json_type_object)) {
        const char *name = cmx_tr_str(cmx_tr_get(tc, "function"), "name");
        out = json_object_new_object();
        json_object_object_add(out, "type", json_object_new_string(name ? "tool" : "auto"));
        if (name != NULL)
            json_object_object_add(out, "name", json_object_new_string(name));
    }
    if (ptc != NULL && json_object_is_type(ptc, json_type_boolean) &&
        !json_object_get_boolean(ptc)) {
        if (out == NULL) {
            out = json_object_new_object();
            json_object_object_add(out, "type", json_object_new_string("auto"));
        }
        const char *t = cmx_tr_str(out, "type");
        if (strcmp(t, "none") != 0)
            json_object_object_add(out, "disable_parallel_tool_use", json_object_new_boolean(1));
    }
    return out;
}

/* Translates an OpenAI chat request into a Messages API body. 0, CMX_EINVAL (*why) or
 * CMX_ENOMEM. Exposed for the unit tests through cmx_provider_anthropic.build. */
static int translate_request(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                             struct cmx_arena *a, json_object **outp, const char **why)
{
    json_object *in = cmx_tr_parse(a, cr->body, cr->body_len);
    if (in == NULL)
        return CMX_ENOMEM;
    json_object *out = json_object_new_object();
    if (cmx_tr_own(a, out) != 0)
        return CMX_ENOMEM;
    *outp = out;
    json_object_object_add(out, "model", json_object_new_string(d->model));
    json_object *n = cmx_tr_get(in, "n");
    if (n != NULL && json_object_is_type(n, json_type_int) && json_object_get_int64(n) > 1) {
        *why = "This provider does not support n > 1.";
        return CMX_EINVAL;
    }
    /* what the Messages API cannot do: rejected, never silently answered otherwise */
    json_object *lp = cmx_tr_get(in, "logprobs");
    if (lp != NULL && json_object_is_type(lp, json_type_boolean) && json_object_get_boolean(lp)) {
        *why = "Anthropic does not return log probabilities: 'logprobs' is not supported.";
        return CMX_EINVAL;
    }
    const char *rft = cmx_tr_str(cmx_tr_get(in, "response_format"), "type");
    if (rft != NULL && strcmp(rft, "text") != 0) {
        *why = "Anthropic's Messages API has no 'response_format' (json_object / json_schema); "
               "use a tool with the schema instead.";
        return CMX_EINVAL;
    }
    json_object *mt = cmx_tr_get(in, "max_completion_tokens");
    if (mt == NULL || !json_object_is_type(mt, json_type_int))
        mt = cmx_tr_get(in, "max_tokens");
    int64_t max_tokens =
        mt != NULL && json_object_is_type(mt, json_type_int)
            ? json_object_get_int64(mt)
            : (d->provider->max_tokens_default > 0 ? d->provider->max_tokens_default : 4096);
    json_object_object_add(out, "max_tokens", json_object_new_int64(max_tokens));

    json_object *msgs_in = cmx_tr_get(in, "messages");
    if (msgs_in == NULL || !json_object_is_type(msgs_in, json_type_array)) {
        *why = "'messages' must be an array.";
        return CMX_EINVAL;
    }
    json_object *msgs = json_object_new_array();
    json_object_object_add(out, "messages", msgs);
    struct cmx_buf sys;
    cmx_buf_init(&sys, 64u << 20);
    int rc = 0;
    for (size_t i = 0; i < json_object_array_length(msgs_in) && rc == 0; i++) {
        json_object *m = json_object_array_get_idx(msgs_in, i);
        const char *role = cmx_tr_str(m, "role");
        json_object *content = cmx_tr_get(m, "content");
        if (role == NULL) {
            *why = "Every message needs a role.";
            rc = CMX_EINVAL;
        } else if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            char *t = cmx_tr_content_text(content, a, "\n");
            if (t != NULL) {
                if (sys.len)
                    cmx_buf_puts(&sys, "\n\n");
                cmx_buf_puts(&sys, t);
            }
        } else if (strcmp(role, "user") == 0) {
            rc = add_content(msgs, "user", content, a, why);
        } else if (strcmp(role, "assistant") == 0) {
            rc = add_content(msgs, "assistant", content, a, why);
            json_object *tcs = cmx_tr_get(m, "tool_calls");
            for (size_t k = 0; rc == 0 && tcs && json_object_is_type(tcs, json_type_array) &&
                               k < json_object_array_length(tcs);
                 k++) {
                json_object *tc = json_object_array_get_idx(tcs, k);
                json_object *fn = cmx_tr_get(tc, "function");
                const char *id = cmx_tr_str(tc, "id"), *name = cmx_tr_str(fn, "name");
                const char *args = cmx_tr_str(fn, "arguments");
                if (id == NULL || name == NULL) {
                    *why = "A tool call needs an id and a function name.";
                    rc = CMX_EINVAL;
                    break;
                }
                json_object *input =
                    args && *args ? cmx_tr_parse_raw(args, strlen(args)) : json_object_new_object();
                if (input == NULL || !json_object_is_type(input, json_type_object)) {
                    json_object_put(input);
                    *why = "A tool call's arguments must be a JSON object.";
                    rc = CMX_EINVAL;
                    break;
                }
                json_object *b = json_object_new_object();
                json_object_object_add(b, "type", json_object_new_string("tool_use"));
                json_object_object_add(b, "id", json_object_new_string(id));
                json_object_object_add(b, "name", json_object_new_string(name));
                json_object_object_add(b, "input", input);
                push_block(msgs, "assistant", b);
            }
        } else if (strcmp(role, "tool") == 0) {
            const char *id = cmx_tr_str(m, "tool_call_id");
            if (id == NULL) {
                *why = "A tool message needs tool_call_id.";
                rc = CMX_EINVAL;
                break;
            }
            char *t = cmx_tr_content_text(content, a, "\n");
            json_object *b = json_object_new_object();
            json_object_object_add(b, "type", json_object_new_string("tool_result"));
            json_object_object_add(b, "tool_use_id", json_object_new_string(id));
            json_object_object_add(b, "content", json_object_new_string(t ? t : ""));
            push_block(msgs, "user", b);
        } else {
            *why = "Unknown message role.";
            rc = CMX_EINVAL;
        }
    }
    if (rc == 0 && sys.len > 0)
        json_object_object_add(out, "system", cmx_tr_strn(sys.data, sys.len));
    cmx_buf_free(&sys);
    if (rc != 0)
        return rc;
    if (json_object_array_length(msgs) == 0) {
        *why = "At least one user or assistant message is required.";
        return CMX_EINVAL;
    }

    static const char *const same[][2] = {{"temperature", "temperature"}, {"top_p", "top_p"}};
    for (size_t i = 0; i < 2; i++) {
        json_object *v = cmx_tr_get(in, same[i][0]);
        if (v != NULL && !json_object_is_type(v, json_type_null))
            json_object_object_add(out, same[i][1], json_object_get(v));
    }
    json_object *stop = cmx_tr_get(in, "stop");
    if (stop != NULL && json_object_is_type(stop, json_type_string)) {
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, json_object_get(stop));
        json_object_object_add(out, "stop_sequences", arr);
    } else if (stop != NULL && json_object_is_type(stop, json_type_array)) {
        json_object_object_add(out, "stop_sequences", json_object_get(stop));
    }
    const char *user = cmx_tr_str(in, "user");
    if (user != NULL) {
        json_object *md = json_object_new_object();
        json_object_object_add(md, "user_id", json_object_new_string(user));
        json_object_object_add(out, "metadata", md);
    }
    json_object *tools = cmx_tr_get(in, "tools");
    if (tools != NULL && json_object_is_type(tools, json_type_array) &&
        json_object_array_length(tools) > 0) {
        json_object *at = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(tools); i++) {
            json_object *fn = cmx_tr_get(json_object_array_get_idx(tools, i), "function");
            const char *name = cmx_tr_str(fn, "name");
            if (name == NULL) {
                json_object_put(at);
                *why = "Every tool needs function.name.";
                return CMX_EINVAL;
            }
            json_object *t = json_object_new_object();
            json_object_object_add(t, "name", json_object_new_string(name));
            const char *desc = cmx_tr_str(fn, "description");
            if (desc != NULL)
                json_object_object_add(t, "description", json_object_new_string(desc));
            json_object *params = cmx_tr_get(fn, "parameters");
            if (params == NULL || !json_object_is_type(params, json_type_object)) {
                params = json_object_new_object();
                json_object_object_add(params, "type", json_object_new_string("object"));
            } else {
                json_object_get(params);
            }
            json_object_object_add(t, "input_schema", params);
            json_object_array_add(at, t);
        }
        json_object_object_add(out, "tools", at);
    }
    json_object *tc =
        tool_choice_of(cmx_tr_get(in, "tool_choice"), cmx_tr_get(in, "parallel_tool_calls"));
    if (tc != NULL)
        json_object_object_add(out, "tool_choice", tc);
    if (cr->stream)
        json_object_object_add(out, "stream", json_object_new_boolean(1));
    return 0;
}

static int build(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, struct cmx_provider_req *out, const char **why)
{
    if (cr->ep != CMX_EP_CHAT) {
        *why = "Anthropic has no embeddings endpoint; route embeddings to another provider.";
        return CMX_EINVAL;
    }
    json_object *body = NULL;
    int r = translate_request(d, cr, a, &body, why);
    if (r != 0)
        return r;
    out->method = "POST";
    out->url = cmx_url_join(a, d->provider->base_url, "v1/messages");
    out->body = cmx_tr_dump(body, a, &out->body_len);
    if (out->url == NULL || out->body == NULL)
        return CMX_ENOMEM;
    if (cmx_openai_headers(out, cr, a, "x-api-key: ", d->provider->api_key,
                           "X-Client-Request-Id") != 0)
        return CMX_ENOMEM;
    out->headers[out->n_headers++] = "anthropic-version: 2023-06-01";
    out->headers[out->n_headers++] =
        cr->stream ? "Accept: text/event-stream" : "Accept: application/json";
    return 0;
}

/* ---- answers --------------------------------------------------------------------------- */

const char *cmx_anthropic_finish_reason(const char *stop_reason);

/* Maps stop_reason to OpenAI's finish_reason. */
const char *cmx_anthropic_finish_reason(const char *s)
{
    if (s == NULL)
        return "stop";
    if (strcmp(s, "max_tokens") == 0 || strcmp(s, "model_context_window_exceeded") == 0)
        return "length";
    if (strcmp(s, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(s, "refusal") == 0)
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn */
}

/* Token counts beyond this are nonsense; capping keeps their sums from overflowing. */
#define MAX_COUNT INT64_C(1000000000000000)

static int64_t int_of_raw(json_object *o, const char *k);

static int64_t int_of(json_object *o, const char *k)
{
    int64_t v = int_of_raw(o, k);
    return v > MAX_COUNT ? MAX_COUNT : v;
}

static int64_t int_of_raw(json_object *o, const char *k)
{
    json_object *v = cmx_tr_get(o, k);
    return v != NULL && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
}

/* Reads an Anthropic usage object into u (OpenAI's meaning). Fields absent keep u's value. */
static void read_usage(json_object *us, struct cmx_usage *u, int64_t *input, int64_t *cw,
                       int64_t *cr_)
{
    int64_t v;
    if ((v = int_of(us, "input_tokens")) >= 0)
        *input = v;
    if ((v = int_of(us, "cache_creation_input_tokens")) >= 0)
        *cw = v;
    if ((v = int_of(us, "cache_read_input_tokens")) >= 0)
        *cr_ = v;
    if ((v = int_of(us, "output_tokens")) >= 0)
        u->completion_tokens = v;
    u->prompt_tokens = (*input > 0 ? *input : 0) + (*cw > 0 ? *cw : 0) + (*cr_ > 0 ? *cr_ : 0);
    u->cached_tokens = *cr_ > 0 ? *cr_ : 0;
    u->reasoning_tokens = 0;
    u->reported = true;
}

static json_object *tool_call(int index, const char *id, const char *name, const char *args,
                              size_t args_len)
{
    json_object *tc = json_object_new_object();
    if (index >= 0)
        json_object_object_add(tc, "index", json_object_new_int(index));
    if (id != NULL) {
        json_object_object_add(tc, "id", json_object_new_string(id));
        json_object_object_add(tc, "type", json_object_new_string("function"));
    }
    json_object *fn = json_object_new_object();
    if (name != NULL)
        json_object_object_add(fn, "name", json_object_new_string(name));
    json_object_object_add(fn, "arguments", cmx_tr_strn(args, args_len));
    json_object_object_add(tc, "function", fn);
    return tc;
}

static int translate(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                     const char *body, size_t len, struct cmx_arena *a, struct cmx_buf *out)
{
    json_object *in = cmx_tr_parse(a, body, len);
    json_object *content = cmx_tr_get(in, "content");
    if (in == NULL || content == NULL || !json_object_is_type(content, json_type_array))
        return CMX_EUPSTREAM;
    struct cmx_buf text, thinking;
    cmx_buf_init(&text, 64u << 20);
    cmx_buf_init(&thinking, 64u << 20);
    json_object *tcs = json_object_new_array();
    bool has_text = false;
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *b = json_object_array_get_idx(content, i);
        const char *type = cmx_tr_str(b, "type");
        if (type == NULL)
            continue;
        if (strcmp(type, "text") == 0 && cmx_tr_str(b, "text") != NULL) {
            cmx_buf_puts(&text, cmx_tr_str(b, "text"));
            has_text = true;
        } else if (strcmp(type, "thinking") == 0 && cmx_tr_str(b, "thinking") != NULL) {
            cmx_buf_puts(&thinking, cmx_tr_str(b, "thinking"));
        } else if (strcmp(type, "tool_use") == 0) {
            json_object *input = cmx_tr_get(b, "input");
            size_t al = 0;
            const char *args =
                input ? json_object_to_json_string_length(
                            input, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &al)
                      : "{}";
            if (input == NULL)
                al = 2;
            json_object_array_add(
                tcs, tool_call(-1, cmx_tr_str(b, "id") ? cmx_tr_str(b, "id") : "toolu_unknown",
                               cmx_tr_str(b, "name"), args, al));
        }
    }
    json_object *o = json_object_new_object();
    const char *id = cmx_tr_str(in, "id");
    json_object_object_add(o, "id", json_object_new_string(id ? id : "msg"));
    json_object_object_add(o, "object", json_object_new_string("chat.completion"));
    const char *model = cmx_tr_str(in, "model");
    json_object_object_add(o, "model", json_object_new_string(model ? model : d->model));
    json_object *msg = json_object_new_object();
    json_object_object_add(msg, "role", json_object_new_string("assistant"));
    json_object_object_add(msg, "content",
                           has_text ? cmx_tr_strn(text.data ? text.data : "", text.len) : NULL);
    cmx_buf_free(&text);
    if (thinking.len > 0)
        json_object_object_add(msg, "reasoning_content", cmx_tr_strn(thinking.data, thinking.len));
    cmx_buf_free(&thinking);
    if (json_object_array_length(tcs) > 0)
        json_object_object_add(msg, "tool_calls", tcs);
    else
        json_object_put(tcs);
    json_object *ch = json_object_new_object();
    json_object_object_add(ch, "index", json_object_new_int(0));
    json_object_object_add(ch, "message", msg);
    json_object_object_add(
        ch, "finish_reason",
        json_object_new_string(cmx_anthropic_finish_reason(cmx_tr_str(in, "stop_reason"))));
    json_object_object_add(ch, "logprobs", NULL);
    json_object *choices = json_object_new_array();
    json_object_array_add(choices, ch);
    json_object_object_add(o, "choices", choices);
    struct cmx_usage u = {-1, -1, -1, -1, false};
    int64_t in_t = -1, cw = -1, crd = -1;
    json_object *us = cmx_tr_get(in, "usage");
    if (us != NULL) {
        read_usage(us, &u, &in_t, &cw, &crd);
        cmx_tr_add_usage(o, &u);
    }
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    int r = cmx_buf_append(out, s, n);
    json_object_put(o);
    return r;
}

/* ---- stream ---------------------------------------------------------------------------- */

struct anth_stream {
    struct cmx_sse_parser sse;
    cmx_chunk_cb cb;
    void *ud;
    char id[128];              /* message id */
    char model[128];           /* model */
    int tool_of[MAX_BLOCKS];   /* content block index -> tool call index, -1 for others */
    bool has_args[MAX_BLOCKS]; /* a tool block sent argument text */
    int n_tools;               /* tool calls seen */
    struct cmx_usage usage;    /* accumulated */
    int64_t in_t, cw, crd;     /* Anthropic's input counts */
    const char *finish;        /* finish_reason once message_delta said it */
    bool started;              /* message_start seen */
    bool stopped;              /* message_stop seen (or an error event) */
};

static json_object *chunk(struct anth_stream *st)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(st->id));
    json_object_object_add(o, "object", json_object_new_string("chat.completion.chunk"));
    json_object_object_add(o, "model", json_object_new_string(st->model));
    return o;
}

/* A chunk with one choice carrying delta (taken over) and finish_reason (may be NULL). */
static int emit_delta(struct anth_stream *st, json_object *delta, const char *finish)
{
    json_object *o = chunk(st);
    json_object *ch = json_object_new_object();
    json_object_object_add(ch, "index", json_object_new_int(0));
    json_object_object_add(ch, "delta", delta);
    json_object_object_add(ch, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, ch);
    json_object_object_add(o, "choices", arr);
    return cmx_tr_emit(o, st->cb, st->ud);
}

static int on_event(void *ud, const struct cmx_sse_event *ev)
{
    struct anth_stream *st = ud;
    if (st->stopped)
        return 0;
    json_object *e = cmx_tr_parse_raw(ev->data, ev->data_len);
    if (e == NULL)
        return CMX_EUPSTREAM;
    const char *type = cmx_tr_str(e, "type");
    if (type == NULL)
        type = ev->event;
    int r = 0;
    if (strcmp(type, "message_start") == 0) {
        json_object *m = cmx_tr_get(e, "message");
        cmx_tr_copy(st->id, sizeof(st->id), cmx_tr_str(m, "id"));
        cmx_tr_copy(st->model, sizeof(st->model), cmx_tr_str(m, "model"));
        json_object *us = cmx_tr_get(m, "usage");
        if (us != NULL)
            read_usage(us, &st->usage, &st->in_t, &st->cw, &st->crd);
        st->started = true;
        json_object *delta = json_object_new_object();
        json_object_object_add(delta, "role", json_object_new_string("assistant"));
        json_object_object_add(delta, "content", json_object_new_string(""));
        r = emit_delta(st, delta, NULL);
    } else if (strcmp(type, "content_block_start") == 0) {
        int64_t idx = int_of(e, "index");
        json_object *b = cmx_tr_get(e, "content_block");
        const char *bt = cmx_tr_str(b, "type");
        if (idx >= 0 && idx < MAX_BLOCKS && bt != NULL && strcmp(bt, "tool_use") == 0) {
            st->tool_of[idx] = st->n_tools++;
            json_object *tcs = json_object_new_array();
            json_object_array_add(tcs, tool_call(st->tool_of[idx], cmx_tr_str(b, "id"),
                                                 cmx_tr_str(b, "name"), "", 0));
            json_object *delta = json_object_new_object();
            json_object_object_add(delta, "tool_calls", tcs);
            r = emit_delta(st, delta, NULL);
        } else if (bt != NULL && strcmp(bt, "text") == 0 && cmx_tr_str(b, "text") != NULL &&
                   cmx_tr_str(b, "text")[0] != '\0') {
            json_object *delta = json_object_new_object();
            json_object_object_add(delta, "content", json_object_new_string(cmx_tr_str(b, "text")));
            r = emit_delta(st, delta, NULL);
        }
    } else if (strcmp(type, "content_block_delta") == 0) {
        int64_t idx = int_of(e, "index");
        json_object *d = cmx_tr_get(e, "delta");
        const char *dt = cmx_tr_str(d, "type");
        if (dt != NULL && strcmp(dt, "text_delta") == 0) {
            json_object *t = cmx_tr_get(d, "text");
            json_object *delta = json_object_new_object();
            json_object_object_add(delta, "content", json_object_get(t));
            r = emit_delta(st, delta, NULL);
        } else if (dt != NULL && strcmp(dt, "input_json_delta") == 0 && idx >= 0 &&
                   idx < MAX_BLOCKS && st->tool_of[idx] >= 0) {
            const char *pj = cmx_tr_str(d, "partial_json");
            if (pj != NULL && pj[0] != '\0') {
                st->has_args[idx] = true;
                json_object *tcs = json_object_new_array();
                json_object_array_add(tcs, tool_call(st->tool_of[idx], NULL, NULL, pj, strlen(pj)));
                json_object *delta = json_object_new_object();
                json_object_object_add(delta, "tool_calls", tcs);
                r = emit_delta(st, delta, NULL);
            }
        } else if (dt != NULL && strcmp(dt, "thinking_delta") == 0) {
            const char *t = cmx_tr_str(d, "thinking");
            if (t != NULL) {
                json_object *delta = json_object_new_object();
                json_object_object_add(delta, "reasoning_content", json_object_new_string(t));
                r = emit_delta(st, delta, NULL);
            }
        }
    } else if (strcmp(type, "content_block_stop") == 0) {
        /* a tool called with no arguments streams only an empty partial_json: its
         * arguments are "{}" (as unstreamed, and as Bedrock's), never "" (not JSON) */
        int64_t idx = int_of(e, "index");
        if (idx >= 0 && idx < MAX_BLOCKS && st->tool_of[idx] >= 0 && !st->has_args[idx]) {
            st->has_args[idx] = true;
            json_object *tcs = json_object_new_array();
            json_object_array_add(tcs, tool_call(st->tool_of[idx], NULL, NULL, "{}", 2));
            json_object *delta = json_object_new_object();
            json_object_object_add(delta, "tool_calls", tcs);
            r = emit_delta(st, delta, NULL);
        }
    } else if (strcmp(type, "message_delta") == 0) {
        json_object *us = cmx_tr_get(e, "usage");
        if (us != NULL)
            read_usage(us, &st->usage, &st->in_t, &st->cw, &st->crd);
        const char *sr = cmx_tr_str(cmx_tr_get(e, "delta"), "stop_reason");
        if (sr != NULL) {
            st->finish = cmx_anthropic_finish_reason(sr);
            r = emit_delta(st, json_object_new_object(), st->finish);
        }
    } else if (strcmp(type, "message_stop") == 0) {
        st->stopped = true;
        if (st->finish == NULL)
            r = emit_delta(st, json_object_new_object(), "stop");
        if (r == 0 && st->usage.reported) {
            json_object *o = chunk(st);
            json_object_object_add(o, "choices", json_object_new_array());
            cmx_tr_add_usage(o, &st->usage);
            r = cmx_tr_emit(o, st->cb, st->ud);
        }
        if (r == 0)
            r = st->cb(st->ud, "[DONE]", 6);
    } else if (strcmp(type, "error") == 0) {
        /* an error after the 200 (overloaded_error...): in-band OpenAI error */
        json_object *err = cmx_tr_get(e, "error");
        const char *et = cmx_tr_str(err, "type");
        const char *msg = cmx_tr_str(err, "message");
        json_object *o = json_object_new_object(), *eo = json_object_new_object();
        json_object_object_add(eo, "message",
                               json_object_new_string(msg ? msg : "upstream stream error"));
        json_object_object_add(eo, "type",
                               json_object_new_string(et && strcmp(et, "invalid_request_error") == 0
                                                          ? "invalid_request_error"
                                                          : "server_error"));
        json_object_object_add(eo, "param", NULL);
        json_object_object_add(eo, "code", json_object_new_string(et ? et : "api_error"));
        json_object_object_add(o, "error", eo);
        st->stopped = true;
        r = cmx_tr_emit(o, st->cb, st->ud);
    }
    /* ping and unknown events: nothing */
    json_object_put(e);
    return r;
}

void *cmx_anthropic_stream_new(struct cmx_arena *a, const struct cmx_deployment_cfg *d);
int cmx_anthropic_stream_feed(void *p, const char *data, size_t len, cmx_chunk_cb cb, void *ud);
int cmx_anthropic_stream_finish(void *p, cmx_chunk_cb cb, void *ud);
void cmx_anthropic_stream_free(void *p);

void *cmx_anthropic_stream_new(struct cmx_arena *a, const struct cmx_deployment_cfg *d)
{
    struct anth_stream *st = cmx_arena_calloc(a, sizeof(*st));
    if (st == NULL)
        return NULL;
    cmx_sse_parser_init(&st->sse, MAX_STREAM_EVENT);
    for (size_t i = 0; i < MAX_BLOCKS; i++)
        st->tool_of[i] = -1;
    st->usage = (struct cmx_usage){-1, -1, -1, -1, false};
    st->in_t = st->cw = st->crd = -1;
    cmx_tr_copy(st->model, sizeof(st->model), d != NULL ? d->model : "");
    return st;
}

int cmx_anthropic_stream_feed(void *p, const char *data, size_t len, cmx_chunk_cb cb, void *ud)
{
    struct anth_stream *st = p;
    st->cb = cb;
    st->ud = ud;
    return cmx_sse_parser_feed(&st->sse, data, len, on_event, st);
}

int cmx_anthropic_stream_finish(void *p, cmx_chunk_cb cb, void *ud)
{
    struct anth_stream *st = p;
    st->cb = cb;
    st->ud = ud;
    int r = cmx_sse_parser_finish(&st->sse, on_event, st);
    if (r == 0 && !st->stopped)
        r = CMX_EUPSTREAM; /* cut before message_stop */
    return r;
}

void cmx_anthropic_stream_free(void *p)
{
    struct anth_stream *st = p;
    if (st != NULL)
        cmx_sse_parser_free(&st->sse);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void parse_error(int status, const struct cmx_http_header *h, size_t nh, const char *body,
                        size_t len, struct cmx_arena *a, struct cmx_upstream_error *out)
{
    /* {"type":"error","error":{"type","message"}} reads like OpenAI's error object */
    cmx_openai_parse_error(status, h, nh, body, len, a, out);
    if (out->type != NULL && out->code == NULL)
        out->code = out->type;
    if (out->type != NULL && strcmp(out->type, "invalid_request_error") != 0)
        out->type = NULL; /* OpenAI's type from the status */
    /* a spend limit does not lift by retrying */
    if (status == 429 && len > 0 && memmem(body, len, "enforced_spend_limit_reached", 28) != NULL) {
        out->no_retry = true;
        out->code = "enforced_spend_limit_reached";
    }
}

const struct cmx_provider_ops cmx_provider_anthropic = {
    .name = "anthropic",
    .build = build,
    .stream_new = cmx_anthropic_stream_new,
    .stream_feed = cmx_anthropic_stream_feed,
    .stream_finish = cmx_anthropic_stream_finish,
    .stream_free = cmx_anthropic_stream_free,
    .translate = translate,
    .parse_error = parse_error,
};
