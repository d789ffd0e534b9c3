# Shared by cloudmux-anthropic.conf and cloudmux-vertex.conf (sourced, not a target): renders
# the translated-path nginx stub (stub/translated-stub.conf.in) into $TARGET_RUN and defines
# $CMX_TSTUB_START, which starts it on $STUB_CPU in the target's process group (so it stops
# with the gateway). Needs $CMX_TSTUB_PORT.
cmx_tstub_prepare() {
    local a_json a_sse g_json g_sse f="$BENCH_DIR/fixtures"
    a_json=$(node "$BENCH_DIR/tools/nginx-literal.js" a_json "$f/anthropic-message.json") || return 1
    a_sse=$(node "$BENCH_DIR/tools/nginx-literal.js" a_sse "$f/anthropic-stream.sse") || return 1
    g_json=$(node "$BENCH_DIR/tools/nginx-literal.js" g_json "$f/gemini-response.json") || return 1
    g_sse=$(node "$BENCH_DIR/tools/nginx-literal.js" g_sse "$f/gemini-stream.sse") || return 1
    render "$BENCH_DIR/stub/translated-stub.conf.in" "$TARGET_RUN/stub.conf" \
        "RUN=$TARGET_RUN" "PORT=$CMX_TSTUB_PORT" \
        "MAPS=$(grep -hv '^VARS ' <<<"$a_json"$'\n'"$a_sse"$'\n'"$g_json"$'\n'"$g_sse")" \
        "A_JSON=$(sed -n 's/^VARS //p' <<<"$a_json")" "A_SSE=$(sed -n 's/^VARS //p' <<<"$a_sse")" \
        "G_JSON=$(sed -n 's/^VARS //p' <<<"$g_json")" "G_SSE=$(sed -n 's/^VARS //p' <<<"$g_sse")"
    nginx -t -q -p "$TARGET_RUN" -c "$TARGET_RUN/stub.conf" -e "$TARGET_RUN/stub-error.log"
}
CMX_TSTUB_START="taskset -c \${STUB_CPU:-0} nginx -p \"\$TARGET_RUN\" -c \"\$TARGET_RUN/stub.conf\" -e \"\$TARGET_RUN/stub-error.log\" & sleep 0.3"
