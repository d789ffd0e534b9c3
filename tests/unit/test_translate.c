/* Anthropic and Vertex (Gemini) translation: request tables, whole answers and the
 * recorded streams of tests/fixtures/provider-stream (re-framed as SSE, fed in small
 * slices), error bodies and retry hints; config of both types; the GCP token policy and
 * the service-account assertion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "auth/gcp_token.h"
#include "auth/jws.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json_scan.h"
#include "providers/provider.h"

#define FIX "tests/fixtures/provider-stream/"

/* ---- helpers --------------------------------------------------------------------------- */

static struct cmx_provider_cfg prov_anth = {.name = "anth",
                                            .type = CMX_PROVIDER_ANTHROPIC,
                                            .base_url = "http://127.0.0.1:9/anth",
                                            .api_key = "sk-ant-test",
                                            .max_tokens_default = 333};
static struct cmx_provider_cfg prov_vx = {.name = "vx",
                                          .type = CMX_PROVIDER_VERTEX,
                                          .base_url =
                                              "https://us-central1-aiplatform.googleapis.com",
                                          .region = "us-central1",
                                          .project = "proj-1",
                                          .access_token = "ya29.fixed"};
static struct cmx_deployment_cfg dep_anth = {.provider = &prov_anth, .model = "claude-x"};
static struct cmx_deployment_cfg dep_vx = {.provider = &prov_vx, .model = "gemini-2.5-pro"};

struct req {
    struct cmx_arena a;
    struct cmx_json_member m[CMX_MAX_MEMBERS];
    struct cmx_client_req cr;
    struct cmx_provider_req out;
    json_object *body; /* the built body, parsed */
};

static int build(struct req *r, const struct cmx_provider_ops *ops,
                 const struct cmx_deployment_cfg *d, enum cmx_endpoint ep, const char *body,
                 const char **why)
{
    cmx_arena_init(&r->a);
    memset(&r->cr, 0, sizeof(r->cr));
    r->cr.ep = ep;
    r->cr.body = body;
    r->cr.body_len = strlen(body);
    r->cr.members = r->m;
    r->cr.request_id = "req-1";
    enum cmx_json_type top;
    assert_int_equal(
        cmx_json_scan(body, strlen(body), &top, r->m, CMX_MAX_MEMBERS, &r->cr.n_members), 0);
    const struct cmx_json_member *s = cmx_json_find(r->m, r->cr.n_members, "stream");
    r->cr.stream = s != NULL && s->type == CMX_JSON_TRUE;
    memset(&r->out, 0, sizeof(r->out));
    *why = NULL;
    int rc = ops->build(d, &r->cr, &r->a, &r->out, why);
    r->body = rc == 0 ? json_tokener_parse(r->out.body) : NULL;
    return rc;
}

static void req_free(struct req *r)
{
    json_object_put(r->body);
    cmx_arena_reset(&r->a);
}

/* The JSON text at a dotted path ("messages.0.content.1.type"); "" when absent. */
static const char *at(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok(buf, "."); tok && o; tok = strtok(NULL, ".")) {
        if (json_object_is_type(o, json_type_array))
            o = json_object_array_get_idx(o, (size_t)atoi(tok));
        else if (!json_object_object_get_ex(o, tok, &o))
            o = NULL;
    }
    if (o == NULL)
        return "";
    return json_object_is_type(o, json_type_string)
               ? json_object_get_string(o)
               : json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                       JSON_C_TO_STRING_NOSLASHESCAPE);
}

static bool has_header(const struct cmx_provider_req *r, const char *h)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i], h) == 0)
            return true;
    return false;
}

/* Collected stream output. */
struct sink {
    char content[8192];
    char args[4][1024];
    char names[4][64];
    char ids[4][64];
    char finish[32];
    int n_chunks;
    int n_done;
    int after_done;
    int n_errors;
    char error_code[64];
    struct cmx_usage u;
    int usage_chunks;
    char last_id[128];
};

static int sink_cb(void *ud, const char *json, size_t len)
{
    struct sink *s = ud;
    if (len == 6 && memcmp(json, "[DONE]", 6) == 0) {
        s->n_done++;
        return 0;
    }
    if (s->n_done)
        s->after_done++;
    s->n_chunks++;
    json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    json_object *v;
    if (json_object_object_get_ex(o, "error", &v)) {
        s->n_errors++;
        snprintf(s->error_code, sizeof(s->error_code), "%s", at(v, "code"));
        json_object_put(o);
        return 0;
    }
    assert_string_equal(at(o, "object"), "chat.completion.chunk");
    snprintf(s->last_id, sizeof(s->last_id), "%s", at(o, "id"));
    if (json_object_object_get_ex(o, "usage", &v) && json_object_is_type(v, json_type_object)) {
        s->usage_chunks++;
        const char *u = json_object_to_json_string(v);
        assert_int_equal(cmx_usage_parse(u, strlen(u), &s->u), 0);
    }
    json_object *ch = NULL;
    json_object_object_get_ex(o, "choices", &ch);
    for (size_t i = 0; ch && i < json_object_array_length(ch); i++) {
        json_object *c = json_object_array_get_idx(ch, i);
        json_object *d = NULL;
        json_object_object_get_ex(c, "delta", &d);
        const char *t = at(d, "content");
        strncat(s->content, t, sizeof(s->content) - strlen(s->content) - 1);
        const char *fr = at(c, "finish_reason");
        if (*fr && strcmp(fr, "null") != 0)
            snprintf(s->finish, sizeof(s->finish), "%s", fr);
        json_object *tcs = NULL;
        if (d && json_object_object_get_ex(d, "tool_calls", &tcs)) {
            for (size_t k = 0; k < json_object_array_length(tcs); k++) {
                json_object *tc = json_object_array_get_idx(tcs, k);
                int idx = atoi(at(tc, "index"));
                assert_true(idx >= 0 && idx < 4);
                if (*at(tc, "id"))
                    snprintf(s->ids[idx], 64, "%s", at(tc, "id"));
                if (*at(tc, "function.name"))
                    snprintf(s->names[idx], 64, "%s", at(tc, "function.name"));
                strncat(s->args[idx], at(tc, "function.arguments"),
                        sizeof(s->args[idx]) - strlen(s->args[idx]) - 1);
            }
        }
    }
    json_object_put(o);
    return 0;
}

/* Re-frames a chunks.txt fixture as SSE (with event names for Anthropic, CRLF when crlf)
 * and feeds it in slices of `slice` bytes. Returns the finish result. */
static int replay(const struct cmx_provider_ops *ops, const struct cmx_deployment_cfg *d,
                  const char *file, bool named, bool crlf, size_t slice, struct sink *s,
                  size_t cut_at)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    struct cmx_buf b;
    cmx_buf_init(&b, 16u << 20);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    const char *nl = crlf ? "\r\n" : "\n";
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (named) {
            json_object *o = json_tokener_parse(line);
            cmx_buf_printf(&b, "event: %s%s", at(o, "type"), nl);
            json_object_put(o);
        }
        cmx_buf_printf(&b, "data: %s%s%s", line, nl, nl);
    }
    free(line);
    fclose(f);
    memset(s, 0, sizeof(*s));
    struct cmx_arena a;
    cmx_arena_init(&a);
    void *st = ops->stream_new(&a, d);
    assert_non_null(st);
    size_t len = cut_at ? cut_at : b.len;
    int r = 0;
    for (size_t off = 0; off < len && r == 0; off += slice) {
        size_t k = len - off < slice ? len - off : slice;
        r = ops->stream_feed(st, b.data + off, k, sink_cb, s);
    }
    if (r == 0)
        r = ops->stream_finish(st, sink_cb, s);
    ops->stream_free(st);
    cmx_arena_reset(&a);
    cmx_buf_free(&b);
    return r;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

/* ---- anthropic ------------------------------------------------------------------------- */

static void test_anthropic_request(void **state)
{
    struct req r;
    const char *why;
    assert_int_equal(
        build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT,
              "{\"model\":\"c\",\"messages\":["
              "{\"role\":\"system\",\"content\":\"Be brief.\"},"
              "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No emojis.\"}]},"
              "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"what is this?\"},"
              "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0=\"}},"
              "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x.test/a.jpg\"}}]},"
              "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\","
              "\"type\":\"function\",\"function\":{\"name\":\"look\",\"arguments\":\"{\\\"q\\\":1}"
              "\"}}]},"
              "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"},"
              "{\"role\":\"user\",\"content\":\"thanks\"}],"
              "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"look\",\"description\":"
              "\"d\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}],"
              "\"tool_choice\":\"required\",\"parallel_tool_calls\":false,"
              "\"temperature\":0.5,\"stop\":\"END\",\"user\":\"u1\",\"stream\":true}",
              &why),
        0);
    assert_string_equal(r.out.url, "http://127.0.0.1:9/anth/v1/messages");
    assert_true(has_header(&r.out, "x-api-key: sk-ant-test"));
    assert_true(has_header(&r.out, "anthropic-version: 2023-06-01"));
    json_object *b = r.body;
    assert_string_equal(at(b, "model"), "claude-x");
    assert_string_equal(at(b, "max_tokens"), "333"); /* max_tokens_default */
    assert_string_equal(at(b, "system"), "Be brief.\n\nNo emojis.");
    assert_string_equal(at(b, "messages.0.role"), "user");
    assert_string_equal(at(b, "messages.0.content.1.source.type"), "base64");
    assert_string_equal(at(b, "messages.0.content.1.source.media_type"), "image/png");
    assert_string_equal(at(b, "messages.0.content.1.source.data"), "iVBORw0=");
    assert_string_equal(at(b, "messages.0.content.2.source.type"), "url");
    assert_string_equal(at(b, "messages.1.role"), "assistant");
    assert_string_equal(at(b, "messages.1.content.0.type"), "tool_use");
    assert_string_equal(at(b, "messages.1.content.0.input"), "{\"q\":1}");
    /* the tool result and the next user text merge into one user message */
    assert_string_equal(at(b, "messages.2.role"), "user");
    assert_string_equal(at(b, "messages.2.content.0.type"), "tool_result");
    assert_string_equal(at(b, "messages.2.content.0.tool_use_id"), "call_1");
    assert_string_equal(at(b, "messages.2.content.0.content"), "sunny");
    assert_string_equal(at(b, "messages.2.content.1.text"), "thanks");
    assert_string_equal(at(b, "tools.0.input_schema.type"), "object");
    assert_string_equal(at(b, "tool_choice.type"), "any");
    assert_string_equal(at(b, "tool_choice.disable_parallel_tool_use"), "true");
    assert_string_equal(at(b, "stop_sequences.0"), "END");
    assert_string_equal(at(b, "metadata.user_id"), "u1");
    assert_string_equal(at(b, "stream"), "true");
    req_free(&r);

    /* client's max tokens win; named tool choice; none */
    assert_int_equal(build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT,
                           "{\"model\":\"c\",\"max_completion_tokens\":77,\"messages\":[{\"role\":"
                           "\"user\",\"content\":\"hi\"}],\"tool_choice\":{\"type\":\"function\","
                           "\"function\":{\"name\":\"f\"}}}",
                           &why),
                     0);
    assert_string_equal(at(r.body, "max_tokens"), "77");
    assert_string_equal(at(r.body, "tool_choice.type"), "tool");
    assert_string_equal(at(r.body, "tool_choice.name"), "f");
    assert_string_equal(at(r.body, "messages.0.content.0.text"), "hi");
    req_free(&r);

    /* bad input -> 400 with a reason, never a crash */
    assert_int_equal(build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT,
                           "{\"model\":\"c\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
                           "[{\"id\":\"x\",\"function\":{\"name\":\"f\",\"arguments\":\"[1\"}}]}]}",
                           &why),
                     CMX_EINVAL);
    assert_non_null(why);
    req_free(&r);
    assert_int_equal(build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT,
                           "{\"model\":\"c\",\"messages\":5}", &why),
                     CMX_EINVAL);
    req_free(&r);
    assert_int_equal(build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_EMBEDDINGS,
                           "{\"model\":\"c\",\"input\":\"x\"}", &why),
                     CMX_EINVAL);
    req_free(&r);
    /* what the Messages API cannot do is refused, never silently dropped */
    static const char *const refused[] = {
        "\"logprobs\":true",
        "\"response_format\":{\"type\":\"json_object\"}",
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}",
    };
    for (size_t i = 0; i < 3; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}",
                 refused[i]);
        why = NULL;
        assert_int_equal(build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT, body, &why),
                         CMX_EINVAL);
        assert_non_null(why);
        req_free(&r);
    }
    /* text response_format and logprobs false pass; an empty text part is dropped (the
     * Messages API refuses empty text blocks), the other parts kept */
    assert_int_equal(build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT,
                           "{\"model\":\"c\",\"logprobs\":false,\"response_format\":{\"type\":"
                           "\"text\"},\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                           "\"text\",\"text\":\"\"},{\"type\":\"text\",\"text\":\"hi\"}]}]}",
                           &why),
                     0);
    assert_string_equal(at(r.body, "messages.0.content.0.text"), "hi");
    assert_string_equal(at(r.body, "messages.0.content.1"), "");
    req_free(&r);
}

static void translate_file(const struct cmx_provider_ops *ops, const struct cmx_deployment_cfg *d,
                           enum cmx_endpoint ep, const char *req, const char *file,
                           json_object **out)
{
    size_t len;
    char *body = slurp(file, &len);
    struct req r;
    const char *why;
    if (ops == &cmx_provider_vertex || ep == CMX_EP_CHAT)
        assert_int_equal(build(&r, ops, d, ep, req, &why), 0);
    struct cmx_buf o;
    cmx_buf_init(&o, 16u << 20);
    assert_int_equal(ops->translate(d, &r.cr, body, len, &r.a, &o), 0);
    assert_int_equal(cmx_buf_append(&o, "", 1), 0);
    *out = json_tokener_parse(o.data);
    assert_non_null(*out);
    cmx_buf_free(&o);
    req_free(&r);
    free(body);
}

static void test_anthropic_answers(void **state)
{
    json_object *o;
    const char *req = "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    translate_file(&cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT, req,
                   FIX "anthropic/anthropic-text.json", &o);
    assert_string_equal(at(o, "object"), "chat.completion");
    assert_string_equal(at(o, "choices.0.message.content"),
                        "Hello! I'm doing well, thanks for asking. How are you doing today? Is "
                        "there anything I can help you with?");
    assert_string_equal(at(o, "choices.0.finish_reason"), "stop");
    assert_string_equal(at(o, "usage.prompt_tokens"), "12");
    assert_string_equal(at(o, "usage.completion_tokens"), "29");
    assert_string_equal(at(o, "usage.total_tokens"), "41");
    json_object_put(o);

    translate_file(&cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT, req,
                   FIX "anthropic/anthropic-tool-no-args.json", &o);
    assert_string_equal(at(o, "choices.0.finish_reason"), "tool_calls");
    assert_string_equal(at(o, "choices.0.message.tool_calls.0.type"), "function");
    assert_string_equal(at(o, "choices.0.message.tool_calls.0.function.name"), "updateIssueList");
    assert_string_equal(at(o, "choices.0.message.tool_calls.0.function.arguments"), "{}");
    json_object_put(o);

    translate_file(&cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT, req,
                   FIX "anthropic/anthropic-refusal.json", &o);
    assert_string_equal(at(o, "choices.0.finish_reason"), "content_filter");
    json_object_put(o);
}

static void test_anthropic_cache_usage(void **state)
{
    static const char body[] =
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\","
        "\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],\"stop_reason\":\"max_tokens\","
        "\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":100,"
        "\"cache_read_input_tokens\":1000,\"output_tokens\":5}}";
    struct req r;
    const char *why;
    assert_int_equal(build(&r, &cmx_provider_anthropic, &dep_anth, CMX_EP_CHAT,
                           "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                           &why),
                     0);
    struct cmx_buf o;
    cmx_buf_init(&o, 1u << 20);
    assert_int_equal(
        cmx_provider_anthropic.translate(&dep_anth, &r.cr, body, strlen(body), &r.a, &o), 0);
    cmx_buf_append(&o, "", 1);
    json_object *j = json_tokener_parse(o.data);
    assert_string_equal(at(j, "usage.prompt_tokens"), "1110");
    assert_string_equal(at(j, "usage.prompt_tokens_details.cached_tokens"), "1000");
    assert_string_equal(at(j, "usage.total_tokens"), "1115");
    assert_string_equal(at(j, "choices.0.finish_reason"), "length");
    json_object_put(j);
    cmx_buf_free(&o);
    /* not an answer -> error, no crash */
    cmx_buf_init(&o, 1u << 20);
    assert_int_not_equal(
        cmx_provider_anthropic.translate(&dep_anth, &r.cr, "{\"x\":1}", 7, &r.a, &o), 0);
    cmx_buf_free(&o);
    req_free(&r);
}

static void test_anthropic_streams(void **state)
{
    struct sink s;
    static const size_t slices[] = {1, 7, 4096};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(replay(&cmx_provider_anthropic, &dep_anth,
                                FIX "anthropic/anthropic-text.chunks.txt", true, i == 1, slices[i],
                                &s, 0),
                         0);
        assert_string_equal(s.content, "Hello! I'm doing well, thank you for asking. How are you "
                                       "doing today? Is there anything I can help you with?");
        assert_string_equal(s.finish, "stop");
        assert_int_equal(s.n_done, 1);
        assert_int_equal(s.after_done, 0);
        assert_int_equal(s.usage_chunks, 1);
        assert_int_equal(s.u.prompt_tokens, 12);
        assert_int_equal(s.u.completion_tokens, 30);
        assert_string_equal(s.last_id, "msg_01QC4g3HwBThD4BaNtBckFDJ");
    }
    assert_int_equal(replay(&cmx_provider_anthropic, &dep_anth,
                            FIX "anthropic/anthropic-json-tool.1.chunks.txt", true, false, 5, &s,
                            0),
                     0);
    assert_string_equal(s.finish, "tool_calls");
    assert_string_equal(s.ids[0], "toolu_01KFbKqPYSuAKujiL6mTfzYA");
    assert_string_equal(s.names[0], "json");
    assert_string_equal(s.args[0], "{\"elements\": [{\"location\": \"San Francisco\", "
                                   "\"temperature\": 58, \"condition\": \"sunny\"}]}");
    assert_int_equal(s.u.prompt_tokens, 849);
    assert_int_equal(s.u.completion_tokens, 47);

    assert_int_equal(replay(&cmx_provider_anthropic, &dep_anth,
                            FIX "anthropic/anthropic-tool-no-args.chunks.txt", true, false, 64, &s,
                            0),
                     0);
    assert_string_equal(s.content, "I'll update the issue list for you.");
    assert_string_equal(s.names[0], "updateIssueList"); /* block 1 is tool call 0 */
    /* only an empty partial_json streamed: "{}" at content_block_stop (as unstreamed) */
    assert_string_equal(s.args[0], "{}");
    assert_string_equal(s.finish, "tool_calls");

    assert_int_equal(replay(&cmx_provider_anthropic, &dep_anth,
                            FIX "anthropic/anthropic-message-delta-input-tokens.chunks.txt", true,
                            false, 3, &s, 0),
                     0);
    assert_string_equal(s.content, "pong");
    assert_int_equal(s.u.prompt_tokens, 61); /* message_delta's input_tokens win */
    assert_int_equal(s.u.completion_tokens, 2);

    assert_int_equal(replay(&cmx_provider_anthropic, &dep_anth,
                            FIX "anthropic/anthropic-refusal.chunks.txt", true, false, 9, &s, 0),
                     0);
    assert_string_equal(s.finish, "content_filter");

    /* cut before message_stop: the decoder reports it */
    assert_int_equal(replay(&cmx_provider_anthropic, &dep_anth,
                            FIX "anthropic/anthropic-text.chunks.txt", true, false, 50, &s, 400),
                     CMX_EUPSTREAM);
    assert_int_equal(s.n_done, 0);
}

static void test_anthropic_inband_error(void **state)
{
    static const char in[] =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\","
        "\"model\":\"c\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
        "\"message\":\"Overloaded\"}}\n\n";
    struct sink s;
    memset(&s, 0, sizeof(s));
    struct cmx_arena a;
    cmx_arena_init(&a);
    void *st = cmx_provider_anthropic.stream_new(&a, &dep_anth);
    assert_int_equal(cmx_provider_anthropic.stream_feed(st, in, strlen(in), sink_cb, &s), 0);
    assert_int_equal(cmx_provider_anthropic.stream_finish(st, sink_cb, &s), 0);
    cmx_provider_anthropic.stream_free(st);
    cmx_arena_reset(&a);
    assert_int_equal(s.n_errors, 1);
    assert_string_equal(s.error_code, "overloaded_error");
    assert_int_equal(s.n_done, 0);
    assert_string_equal(s.content, "Hi");
}

static void test_anthropic_errors(void **state)
{
    struct cmx_arena a;
    cmx_arena_init(&a);
    struct cmx_upstream_error e;
    const char *b = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
                    "\"Overloaded\"}}";
    cmx_provider_anthropic.parse_error(529, NULL, 0, b, strlen(b), &a, &e);
    assert_string_equal(e.message, "Overloaded");
    assert_string_equal(e.code, "overloaded_error");
    assert_false(e.no_retry);
    b = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"spend\","
        "\"error_code\":\"enforced_spend_limit_reached\"}}";
    cmx_provider_anthropic.parse_error(429, NULL, 0, b, strlen(b), &a, &e);
    assert_true(e.no_retry);
    assert_string_equal(e.code, "enforced_spend_limit_reached");
    b = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow\"}}";
    cmx_provider_anthropic.parse_error(429, NULL, 0, b, strlen(b), &a, &e);
    assert_false(e.no_retry);
    b = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"bad\"}}";
    cmx_provider_anthropic.parse_error(400, NULL, 0, b, strlen(b), &a, &e);
    assert_string_equal(e.type, "invalid_request_error");
    cmx_provider_anthropic.parse_error(502, NULL, 0, "<html>", 6, &a, &e);
    assert_non_null(e.message);
    cmx_arena_reset(&a);
}

/* ---- vertex ---------------------------------------------------------------------------- */

static void test_vertex_request(void **state)
{
    struct req r;
    const char *why;
    assert_int_equal(
        build(&r, &cmx_provider_vertex, &dep_vx, CMX_EP_CHAT,
              "{\"model\":\"g\",\"messages\":["
              "{\"role\":\"system\",\"content\":\"Be brief.\"},"
              "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"see\"},"
              "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}},"
              "{\"type\":\"image_url\",\"image_url\":{\"url\":\"gs://b/x.webp\"}}]},"
              "{\"role\":\"assistant\",\"content\":\"checking\",\"tool_calls\":[{\"id\":\"call_9\","
              "\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":"
              "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
              "{\"role\":\"tool\",\"tool_call_id\":\"call_9\",\"content\":\"rain\"},"
              "{\"role\":\"tool\",\"tool_call_id\":\"call_9\",\"content\":\"{\\\"t\\\":3}\"}],"
              "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\","
              "\"parameters\":{\"type\":\"object\"}}}],"
              "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"weather\"}},"
              "\"temperature\":0.2,\"top_p\":0.9,\"max_completion_tokens\":99,\"seed\":7,"
              "\"stop\":[\"a\",\"b\"],\"response_format\":{\"type\":\"json_schema\","
              "\"json_schema\":{\"name\":\"s\",\"schema\":{\"type\":\"object\"}}},"
              "\"stream\":true}",
              &why),
        0);
    assert_string_equal(r.out.url, "https://us-central1-aiplatform.googleapis.com/v1/projects/"
                                   "proj-1/locations/us-central1/publishers/google/models/"
                                   "gemini-2.5-pro:streamGenerateContent?alt=sse");
    assert_true(has_header(&r.out, "Authorization: Bearer ya29.fixed"));
    json_object *b = r.body;
    assert_string_equal(at(b, "systemInstruction.parts.0.text"), "Be brief.");
    assert_string_equal(at(b, "contents.0.role"), "user");
    assert_string_equal(at(b, "contents.0.parts.1.inlineData.mimeType"), "image/png");
    assert_string_equal(at(b, "contents.0.parts.1.inlineData.data"), "AAAA");
    assert_string_equal(at(b, "contents.0.parts.2.fileData.mimeType"), "image/webp");
    assert_string_equal(at(b, "contents.1.role"), "model");
    assert_string_equal(at(b, "contents.1.parts.0.text"), "checking");
    assert_string_equal(at(b, "contents.1.parts.1.functionCall.name"), "weather");
    assert_string_equal(at(b, "contents.1.parts.1.functionCall.args"), "{\"city\":\"Paris\"}");
    assert_string_equal(at(b, "contents.2.role"), "user");
    assert_string_equal(at(b, "contents.2.parts.0.functionResponse.name"), "weather");
    assert_string_equal(at(b, "contents.2.parts.0.functionResponse.response"),
                        "{\"content\":\"rain\"}");
    assert_string_equal(at(b, "contents.2.parts.1.functionResponse.response"), "{\"t\":3}");
    assert_string_equal(at(b, "tools.0.functionDeclarations.0.parametersJsonSchema.type"),
                        "object");
    assert_string_equal(at(b, "toolConfig.functionCallingConfig.mode"), "ANY");
    assert_string_equal(at(b, "toolConfig.functionCallingConfig.allowedFunctionNames.0"),
                        "weather");
    assert_string_equal(at(b, "generationConfig.temperature"), "0.2");
    assert_string_equal(at(b, "generationConfig.topP"), "0.9");
    assert_string_equal(at(b, "generationConfig.maxOutputTokens"), "99");
    assert_string_equal(at(b, "generationConfig.seed"), "7");
    assert_string_equal(at(b, "generationConfig.stopSequences.1"), "b");
    assert_string_equal(at(b, "generationConfig.responseMimeType"), "application/json");
    assert_string_equal(at(b, "generationConfig.responseJsonSchema.type"), "object");
    req_free(&r);

    static const struct {
        const char *choice, *mode;
    } modes[] = {{"\"auto\"", "AUTO"}, {"\"none\"", "NONE"}, {"\"required\"", "ANY"}};
    for (size_t i = 0; i < 3; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                 "\"tool_choice\":%s}",
                 modes[i].choice);
        assert_int_equal(build(&r, &cmx_provider_vertex, &dep_vx, CMX_EP_CHAT, body, &why), 0);
        assert_string_equal(at(r.body, "toolConfig.functionCallingConfig.mode"), modes[i].mode);
        assert_true(strstr(r.out.url, ":generateContent") != NULL);
        req_free(&r);
    }
    /* a 64-bit seed is folded into Gemini's int32 (its low 32 bits); one that fits stays;
     * an empty text part is dropped; logprobs is refused (not translated) */
    assert_int_equal(build(&r, &cmx_provider_vertex, &dep_vx, CMX_EP_CHAT,
                           "{\"model\":\"g\",\"seed\":12345678901,\"messages\":[{\"role\":"
                           "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"\"},{\"type\":"
                           "\"text\",\"text\":\"hi\"}]}]}",
                           &why),
                     0);
    assert_string_equal(at(r.body, "generationConfig.seed"), "-539222987");
    assert_string_equal(at(r.body, "contents.0.parts.0.text"), "hi");
    assert_string_equal(at(r.body, "contents.0.parts.1"), "");
    req_free(&r);
    assert_int_equal(build(&r, &cmx_provider_vertex, &dep_vx, CMX_EP_CHAT,
                           "{\"model\":\"g\",\"seed\":42,\"messages\":[{\"role\":\"user\","
                           "\"content\":\"x\"}]}",
                           &why),
                     0);
    assert_string_equal(at(r.body, "generationConfig.seed"), "42");
    req_free(&r);
    assert_int_equal(build(&r, &cmx_provider_vertex, &dep_vx, CMX_EP_CHAT,
                           "{\"model\":\"g\",\"logprobs\":true,\"messages\":[{\"role\":\"user\","
                           "\"content\":\"x\"}]}",
                           &why),
                     CMX_EINVAL);
    req_free(&r);
    /* a tool result for an unknown call -> 400 */
    assert_int_equal(build(&r, &cmx_provider_vertex, &dep_vx, CMX_EP_CHAT,
                           "{\"model\":\"g\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":"
                           "\"nope\",\"content\":\"x\"}]}",
                           &why),
                     CMX_EINVAL);
    assert_non_null(why);
    req_free(&r);
    /* embeddings via :predict; region global has no region prefix in the host */
    struct cmx_provider_cfg g = prov_vx;
    g.region = "global";
    g.base_url = "https://aiplatform.googleapis.com";
    struct cmx_deployment_cfg dg = {.provider = &g, .model = "text-embedding-005"};
    assert_int_equal(build(&r, &cmx_provider_vertex, &dg, CMX_EP_EMBEDDINGS,
                           "{\"model\":\"e\",\"input\":[\"a\",\"b\"],\"dimensions\":5}", &why),
                     0);
    assert_string_equal(r.out.url, "https://aiplatform.googleapis.com/v1/projects/proj-1/"
                                   "locations/global/publishers/google/models/"
                                   "text-embedding-005:predict");
    assert_string_equal(at(r.body, "instances.1.content"), "b");
    assert_string_equal(at(r.body, "parameters.outputDimensionality"), "5");
    req_free(&r);
}

static void test_vertex_answers(void **state)
{
    json_object *o;
    const char *req = "{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    translate_file(&cmx_provider_vertex, &dep_vx, CMX_EP_CHAT, req,
                   FIX "vertex-gemini/google-tool-call.json", &o);
    assert_string_equal(at(o, "choices.0.finish_reason"), "tool_calls");
    assert_string_equal(at(o, "choices.0.message.tool_calls.0.function.name"), "weather");
    assert_string_equal(at(o, "choices.0.message.tool_calls.0.function.arguments"),
                        "{\"location\":\"San Francisco\"}");
    assert_true(strncmp(at(o, "choices.0.message.tool_calls.0.id"), "call_", 5) == 0);
    char id1[4096];
    snprintf(id1, sizeof(id1), "%s", at(o, "choices.0.message.tool_calls.0.id"));
    /* the call's thoughtSignature rides in its id (Gemini 3 wants it back next turn) */
    const char *sig = strstr(id1, "__thought__");
    assert_non_null(sig);
    assert_int_equal(strncmp(sig + 11, "EskgCsYgAb4+9vtF7/499YQS2bjZs3x", 31), 0);
    assert_string_equal(at(o, "usage.prompt_tokens"), "29");
    assert_string_equal(at(o, "usage.completion_tokens"), "908"); /* 15 + 893 thoughts */
    assert_string_equal(at(o, "usage.completion_tokens_details.reasoning_tokens"), "893");
    json_object_put(o);
    translate_file(&cmx_provider_vertex, &dep_vx, CMX_EP_CHAT, req,
                   FIX "vertex-gemini/google-tool-call.json", &o);
    assert_string_equal(at(o, "choices.0.message.tool_calls.0.id"), id1); /* stable */
    json_object_put(o);
    /* that call in the next turn's history: the functionCall part gets its signature back,
     * the tool result is matched to it by the whole id */
    char next[9000];
    snprintf(next, sizeof(next),
             "{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
             "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"%s\",\"type\":\"function\","
             "\"function\":{\"name\":\"weather\",\"arguments\":\"{}\"}},{\"id\":\"call_plain\","
             "\"type\":\"function\",\"function\":{\"name\":\"time\",\"arguments\":\"{}\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"%s\",\"content\":\"sunny\"},"
             "{\"role\":\"tool\",\"tool_call_id\":\"call_plain\",\"content\":\"noon\"}]}",
             id1, id1);
    struct req r;
    const char *why;
    assert_int_equal(build(&r, &cmx_provider_vertex, &dep_vx, CMX_EP_CHAT, next, &why), 0);
    assert_string_equal(at(r.body, "contents.1.parts.0.functionCall.name"), "weather");
    assert_string_equal(at(r.body, "contents.1.parts.0.thoughtSignature"), sig + 11);
    assert_string_equal(at(r.body, "contents.1.parts.1.functionCall.name"), "time");
    assert_string_equal(at(r.body, "contents.1.parts.1.thoughtSignature"), "");
    assert_string_equal(at(r.body, "contents.2.parts.0.functionResponse.name"), "weather");
    assert_string_equal(at(r.body, "contents.2.parts.1.functionResponse.name"), "time");
    req_free(&r);

    translate_file(&cmx_provider_vertex, &dep_vx, CMX_EP_CHAT, req,
                   FIX "vertex-gemini/google-text.json", &o);
    assert_string_equal(at(o, "choices.0.finish_reason"), "stop");
    assert_true(strlen(at(o, "choices.0.message.content")) > 0);
    json_object_put(o);

    translate_file(&cmx_provider_vertex, &dep_vx, CMX_EP_EMBEDDINGS,
                   "{\"model\":\"e\",\"input\":[\"a\",\"b\"]}",
                   FIX "vertex-gemini/google-vertex-embedding.json", &o);
    assert_string_equal(at(o, "object"), "list");
    assert_string_equal(at(o, "data.1.index"), "1");
    assert_string_equal(at(o, "data.1.object"), "embedding");
    json_object *emb = json_tokener_parse(at(o, "data.0.embedding"));
    assert_int_equal(json_object_array_length(emb), 5);
    json_object_put(emb);
    assert_string_equal(at(o, "usage.prompt_tokens"), "11");
    json_object_put(o);

    translate_file(&cmx_provider_vertex, &dep_vx, CMX_EP_EMBEDDINGS,
                   "{\"model\":\"e\",\"input\":\"a\",\"encoding_format\":\"base64\"}",
                   FIX "vertex-gemini/google-vertex-embedding.json", &o);
    struct cmx_buf raw;
    cmx_buf_init(&raw, 1024);
    const char *b64 = at(o, "data.0.embedding");
    assert_int_equal(cmx_b64url_decode(&raw, b64, strlen(b64)), 0);
    assert_int_equal(raw.len, 20);
    float f0;
    memcpy(&f0, raw.data, 4); /* little-endian hosts */
    assert_true(f0 < -0.0179f && f0 > -0.0181f);
    cmx_buf_free(&raw);
    json_object_put(o);
}

static void test_vertex_streams(void **state)
{
    struct sink s;
    for (int crlf = 0; crlf < 2; crlf++) {
        assert_int_equal(replay(&cmx_provider_vertex, &dep_vx,
                                FIX "vertex-gemini/google-text.chunks.txt", false, crlf,
                                crlf ? 3 : 1000, &s, 0),
                         0);
        assert_string_equal(s.content,
                            "There are **3** \"r\"s in strawberry.\n\nst**r**awbe**rr**y");
        assert_string_equal(s.finish, "stop");
        assert_int_equal(s.n_done, 1);
        assert_int_equal(s.after_done, 0);
        assert_int_equal(s.usage_chunks, 1); /* cumulative usage -> one final chunk */
        assert_int_equal(s.u.prompt_tokens, 9);
        assert_int_equal(s.u.completion_tokens, 23 + 185);
        assert_int_equal(s.u.reasoning_tokens, 185);
        assert_string_equal(s.last_id, "bH6LaZW8Fp_3nsEPqtaSwQ4");
    }
    assert_int_equal(replay(&cmx_provider_vertex, &dep_vx,
                            FIX "vertex-gemini/google-tool-call.chunks.txt", false, false, 11, &s,
                            0),
                     0);
    assert_string_equal(s.names[0], "weather");
    assert_string_equal(s.args[0], "{\"location\":\"San Francisco\"}");
    assert_true(strncmp(s.ids[0], "call_", 5) == 0);
    assert_string_equal(s.finish, "tool_calls");
    assert_int_equal(replay(&cmx_provider_vertex, &dep_vx,
                            FIX "vertex-gemini/google-reasoning.chunks.txt", false, true, 17, &s,
                            0),
                     0);
    assert_string_equal(s.content, "There are **3** \"r\"s in strawberry.\n\nHere is the "
                                   "breakdown: st**r**awbe**rr**y.");
    assert_int_equal(s.u.completion_tokens, 29 + 256);
    /* the nested streamed-arguments fixture must not crash or hang */
    (void)replay(&cmx_provider_vertex, &dep_vx,
                 FIX "vertex-gemini/google-vertex-stream-tool-call-arguments-nested.1.chunks.txt",
                 false, false, 100, &s, 0);
    /* EOF before any finishReason: cut */
    assert_int_equal(replay(&cmx_provider_vertex, &dep_vx,
                            FIX "vertex-gemini/google-text.chunks.txt", false, false, 64, &s, 500),
                     CMX_EUPSTREAM);
    assert_int_equal(s.n_done, 0);
}

static void test_vertex_errors(void **state)
{
    size_t len;
    char *body = slurp(FIX "vertex-gemini/google-429-retry-info.json", &len);
    struct cmx_arena a;
    cmx_arena_init(&a);
    struct cmx_upstream_error e;
    cmx_provider_vertex.parse_error(429, NULL, 0, body, len, &a, &e);
    assert_string_equal(e.message, "You exceeded your current quota, please check your plan.");
    assert_string_equal(e.code, "resource_exhausted");
    assert_int_equal(e.retry_after_ms, 34400);
    free(body);
    const char *arr = "[{\"error\":{\"code\":403,\"message\":\"denied\",\"status\":"
                      "\"PERMISSION_DENIED\"}}]";
    cmx_provider_vertex.parse_error(403, NULL, 0, arr, strlen(arr), &a, &e);
    assert_string_equal(e.message, "denied");
    assert_string_equal(e.code, "permission_denied");
    assert_int_equal(e.retry_after_ms, 0);
    cmx_provider_vertex.parse_error(503, NULL, 0, "oops", 4, &a, &e);
    assert_non_null(e.message);
    cmx_arena_reset(&a);
}

/* ---- config ---------------------------------------------------------------------------- */

static struct cmx_config *load(const char *yaml, char *diag_out, size_t cap)
{
    struct cmx_config *cfg = NULL;
    struct cmx_config_diag d;
    cmx_config_diag_init(&d);
    cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d);
    snprintf(diag_out, cap, "%.*s", (int)d.text.len, d.text.data ? d.text.data : "");
    cmx_config_diag_free(&d);
    return cfg;
}

#define MODELS "models:\n  - name: m\n    deployments:\n      - provider: a\n        model: x\n"

static void test_config_types(void **state)
{
    char diag[2048];
    struct cmx_config *cfg =
        load("providers:\n  - name: a\n    type: anthropic\n    cloud: anthropic\n"
             "    api_key: k1234\n" MODELS,
             diag, sizeof(diag));
    assert_non_null(cfg);
    assert_string_equal(cfg->providers[0].base_url, "https://api.anthropic.com");
    assert_int_equal(cfg->providers[0].max_tokens_default, 4096);
    assert_string_equal(cmx_provider_type_name(cfg->providers[0].type), "anthropic");
    cmx_config_unref(cfg);

    cfg = load("providers:\n  - name: a\n    type: vertex\n    cloud: gcp\n    project: p\n"
               "    region: global\n    access_token: tok\n" MODELS,
               diag, sizeof(diag));
    assert_non_null(cfg);
    assert_string_equal(cfg->providers[0].base_url, "https://aiplatform.googleapis.com");
    cmx_config_unref(cfg);
    cfg = load("providers:\n  - name: a\n    type: vertex\n    cloud: gcp\n    project: p\n"
               "    region: europe-west4\n    access_token: tok\n" MODELS,
               diag, sizeof(diag));
    assert_non_null(cfg);
    assert_string_equal(cfg->providers[0].base_url,
                        "https://europe-west4-aiplatform.googleapis.com");
    cmx_config_unref(cfg);
    cfg = load(
        "providers:\n  - name: a\n    type: vertex\n    cloud: gcp\n    project: p\n"
        "    region: us-east5\n    access_token: tok\n    endpoint: http://127.0.0.1:5/\n" MODELS,
        diag, sizeof(diag));
    assert_non_null(cfg);
    assert_string_equal(cfg->providers[0].base_url, "http://127.0.0.1:5");
    cmx_config_unref(cfg);

    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    cfg = load("providers:\n  - name: a\n    type: vertex\n    cloud: gcp\n" MODELS, diag,
               sizeof(diag));
    assert_null(cfg);
    assert_non_null(strstr(diag, "missing required key \"project\""));
    assert_non_null(strstr(diag, "missing required key \"region\""));
    assert_non_null(strstr(diag, "needs credentials"));
    cfg = load("providers:\n  - name: a\n    type: vertex\n    cloud: gcp\n    project: p\n"
               "    region: r\n    credentials_file: /nonexistent/key.json\n" MODELS,
               diag, sizeof(diag));
    assert_null(cfg);
    assert_non_null(strstr(diag, "credentials_file: cannot read it as JSON"));
    cfg = load("providers:\n  - name: a\n    type: openai\n    cloud: c\n    api_key: k\n"
               "    base_url: http://h\n    project: p\n    max_tokens_default: 5\n" MODELS,
               diag, sizeof(diag));
    assert_null(cfg);
    assert_non_null(strstr(diag, "project is only valid for type vertex"));
    assert_non_null(strstr(diag, "max_tokens_default is only valid for type anthropic"));
    cfg = load("providers:\n  - name: a\n    type: anthropic\n    cloud: c\n" MODELS, diag,
               sizeof(diag));
    assert_null(cfg);
    assert_non_null(strstr(diag, "api_key"));
}

/* ---- gcp tokens ------------------------------------------------------------------------ */

static void test_token_policy(void **state)
{
    uint64_t t0 = 1000000000;
    uint64_t hour = 3600000;
    assert_int_equal(cmx_gcp_token_policy(t0, t0, t0 + hour), 0);
    assert_int_equal(cmx_gcp_token_policy(t0 + hour - 301000, t0, t0 + hour), 0);
    assert_int_equal(cmx_gcp_token_policy(t0 + hour - 299000, t0, t0 + hour), 1);
    assert_int_equal(cmx_gcp_token_policy(t0 + hour - 5000, t0, t0 + hour), 2);
    assert_int_equal(cmx_gcp_token_policy(t0 + hour, t0, t0 + hour), 2);
    /* a 60 s token: refresh at half-life */
    assert_int_equal(cmx_gcp_token_policy(t0 + 29000, t0, t0 + 60000), 0);
    assert_int_equal(cmx_gcp_token_policy(t0 + 31000, t0, t0 + 60000), 1);
    assert_int_equal(cmx_gcp_token_policy(t0, t0, t0), 2);
}

static void test_assertion(void **state)
{
    /* a fresh key, written as a service-account file */
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *pem;
    long pl = BIO_get_mem_data(b, &pem);
    json_object *sa = json_object_new_object();
    json_object_object_add(sa, "type", json_object_new_string("service_account"));
    json_object_object_add(sa, "client_email", json_object_new_string("sa@p.iam.test"));
    json_object_object_add(sa, "private_key_id", json_object_new_string("kid-42"));
    json_object_object_add(sa, "private_key", json_object_new_string_len(pem, (int)pl));
    json_object_object_add(sa, "token_uri", json_object_new_string("http://127.0.0.1:1/token"));
    char path[] = "/tmp/cmx-sa-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *txt = json_object_to_json_string(sa);
    assert_int_equal(write(fd, txt, strlen(txt)), (ssize_t)strlen(txt));
    close(fd);
    const char *why = NULL;
    assert_int_equal(cmx_gcp_credentials_check(path, &why), 0);

    /* the example config loads with this key as GOOGLE_APPLICATION_CREDENTIALS */
    setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
    setenv("ANTHROPIC_API_KEY", "sk-ant-x", 1);
    setenv("OPENAI_API_KEY", "sk-x", 1);
    struct cmx_config *ex = NULL;
    struct cmx_config_diag diag;
    cmx_config_diag_init(&diag);
    int lr = cmx_config_load("examples/multicloud.yaml", &ex, &diag);
    if (lr != 0)
        fprintf(stderr, "%.*s", (int)diag.text.len, diag.text.data);
    assert_int_equal(lr, 0);
    assert_string_equal(cmx_config_find_provider(ex, "vertex-global")->base_url,
                        "https://aiplatform.googleapis.com");
    assert_string_equal(cmx_config_find_provider(ex, "vertex-us")->credentials_file, path);
    cmx_config_unref(ex);
    cmx_config_diag_free(&diag);
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");

    struct cmx_buf jwt;
    cmx_buf_init(&jwt, 1u << 16);
    assert_int_equal(cmx_gcp_assertion(path, 1700000000, &jwt), 0);
    cmx_buf_append(&jwt, "", 1);
    char *dot1 = strchr(jwt.data, '.'), *dot2 = strrchr(jwt.data, '.');
    assert_true(dot1 != NULL && dot2 != NULL && dot1 != dot2);
    struct cmx_buf h, c, sig;
    cmx_buf_init(&h, 1u << 16);
    cmx_buf_init(&c, 1u << 16);
    cmx_buf_init(&sig, 1u << 16);
    assert_int_equal(cmx_b64url_decode(&h, jwt.data, (size_t)(dot1 - jwt.data)), 0);
    assert_int_equal(cmx_b64url_decode(&c, dot1 + 1, (size_t)(dot2 - dot1 - 1)), 0);
    assert_int_equal(cmx_b64url_decode(&sig, dot2 + 1, strlen(dot2 + 1)), 0);
    cmx_buf_append(&h, "", 1);
    cmx_buf_append(&c, "", 1);
    json_object *ho = json_tokener_parse(h.data), *co = json_tokener_parse(c.data);
    assert_string_equal(at(ho, "alg"), "RS256");
    assert_string_equal(at(ho, "typ"), "JWT");
    assert_string_equal(at(ho, "kid"), "kid-42");
    assert_string_equal(at(co, "iss"), "sa@p.iam.test");
    assert_string_equal(at(co, "scope"), "https://www.googleapis.com/auth/cloud-platform");
    assert_string_equal(at(co, "aud"), "http://127.0.0.1:1/token");
    assert_string_equal(at(co, "iat"), "1700000000");
    assert_string_equal(at(co, "exp"), "1700003600");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestVerify(md, (unsigned char *)sig.data, sig.len,
                                      (unsigned char *)jwt.data, (size_t)(dot2 - jwt.data)),
                     1);
    EVP_MD_CTX_free(md);
    json_object_put(ho);
    json_object_put(co);
    cmx_buf_free(&h);
    cmx_buf_free(&c);
    cmx_buf_free(&sig);
    cmx_buf_free(&jwt);
    json_object_put(sa);
    BIO_free(b);
    EVP_PKEY_free(k);
    unlink(path);
    assert_int_not_equal(cmx_gcp_credentials_check(path, &why), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_request),
        cmocka_unit_test(test_anthropic_answers),
        cmocka_unit_test(test_anthropic_cache_usage),
        cmocka_unit_test(test_anthropic_streams),
        cmocka_unit_test(test_anthropic_inband_error),
        cmocka_unit_test(test_anthropic_errors),
        cmocka_unit_test(test_vertex_request),
        cmocka_unit_test(test_vertex_answers),
        cmocka_unit_test(test_vertex_streams),
        cmocka_unit_test(test_vertex_errors),
        cmocka_unit_test(test_config_types),
        cmocka_unit_test(test_token_policy),
        cmocka_unit_test(test_assertion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
