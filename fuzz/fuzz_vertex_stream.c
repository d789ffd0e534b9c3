/* libFuzzer target for the Vertex (Gemini) stream decoder, answer/embedding translator and
 * google.rpc error parser (src/providers/vertex.c); see stream_fuzz_int.h. */
#include "stream_fuzz_int.h"

static struct cmx_provider_cfg prov = {.name = "v",
                                       .type = CMX_PROVIDER_VERTEX,
                                       .base_url = "http://127.0.0.1:1",
                                       .region = "r",
                                       .project = "p",
                                       .access_token = "t"};
static struct cmx_deployment_cfg dep = {.provider = &prov, .model = "gemini"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_provider(&cmx_provider_vertex, &dep, data, size);
}
