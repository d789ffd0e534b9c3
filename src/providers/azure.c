/* Azure OpenAI: OpenAI's wire format with its own URLs and auth. Two surfaces:
 *  - classic: {base}/openai/deployments/{deployment}/chat/completions?api-version=V
 *    (when the provider sets api_version);
 *  - v1: {base}/openai/v1/chat/completions, "model" in the body is the deployment name.
 * The key goes in the api-key header. Azure's extra fields (prompt_filter_results,
 * content_filter_results) pass through untouched. */
#include "providers/provider.h"
#include "core/err.h"

#include <ctype.h>
#include <string.h>

/* Percent-encodes s as one path segment. */
static char *encode_segment(struct cmx_arena *a, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = cmx_arena_alloc(a, n * 3 + 1), *w = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w = '\0';
    return out;
}

static int build(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, struct cmx_provider_req *out, const char **why)
{
    const struct cmx_provider_cfg *p = d->provider;
    const char *op = cr->ep == CMX_EP_CHAT ? "chat/completions" : "embeddings";
    out->method = "POST";
    if (p->api_version != NULL) {
        char *dep = encode_segment(a, d->model);
        char *base = dep ? cmx_url_join(a, p->base_url, "openai/deployments") : NULL;
        out->url =
            base ? cmx_arena_printf(a, "%s/%s/%s?api-version=%s", base, dep, op, p->api_version)
                 : NULL;
    } else {
        size_t bl = strlen(p->base_url);
        bool has_v1 = bl >= 10 && strcmp(p->base_url + bl - 10, "/openai/v1") == 0;
        char *base = has_v1 ? (char *)p->base_url : cmx_url_join(a, p->base_url, "openai/v1");
        out->url = base ? cmx_url_join(a, base, op) : NULL;
    }
    if (out->url == NULL)
        return CMX_ENOMEM;
    if (cmx_openai_headers(out, cr, a, "api-key: ", p->api_key, "x-ms-client-request-id") != 0)
        return CMX_ENOMEM;
    return cmx_openai_rewrite_body(cr, d->model, a, &out->body, &out->body_len);
}

const struct cmx_provider_ops cmx_provider_azure_openai = {
    .name = "azure_openai",
    .build = build,
    .stream_new = cmx_openai_stream_new,
    .stream_feed = cmx_openai_stream_feed,
    .stream_finish = cmx_openai_stream_finish,
    .stream_free = cmx_openai_stream_free,
    .translate = NULL,
    .parse_error = cmx_openai_parse_error,
};
