// Minimal Server-Sent Events reader shared by the simulator tests and the e2e tests.

/** Parses a complete SSE text into events [{event, data, raw}] (data lines joined with "\n"). */
export function parseSSE(text) {
  const events = [];
  const blocks = text.replace(/\r\n?/g, '\n').split('\n\n');
  for (const block of blocks) {
    if (!block.trim()) continue;
    let event = null;
    const data = [];
    let seen = false;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') {
        data.push(value);
        seen = true;
      } else if (field === 'event') event = value;
    }
    if (seen) events.push({ event, data: data.join('\n'), raw: block });
  }
  return events;
}

/**
 * Reads an SSE response body (a fetch Response) incrementally. Yields {event, data, at} where `at`
 * is the performance.now() time the event was complete. Throws whatever the body stream throws.
 */
export async function* readSSE(response) {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const part of response.body) {
    buf += decoder.decode(part, { stream: true }).replace(/\r\n?/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i + 2);
      buf = buf.slice(i + 2);
      const at = performance.now();
      for (const ev of parseSSE(block)) yield { ...ev, at };
    }
  }
  buf += decoder.decode();
  if (buf.trim()) for (const ev of parseSSE(buf)) yield { ...ev, at: performance.now(), unterminated: true };
}

/** Collects the whole SSE body of a fetch Response: {events, text}. */
export async function collectSSE(response) {
  const text = await response.text();
  return { events: parseSSE(text), text };
}
