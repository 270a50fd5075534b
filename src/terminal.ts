/**
 * Text from outside (provider answers, data, journals) is shown with its control characters
 * escaped: an ANSI sequence in a 401 body must not clear the screen or retitle the terminal.
 */

// C0 except tab and newline, DEL, C1 (0x9b is a one-byte CSI for some terminals), and the
// bidirectional overrides that make text read differently from what it is.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Each control character as `\u001b`. The escape is also a valid JSON string escape of the
 * same character, so escaping a JSON document leaves it valid JSON with the same value.
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The start of a text, controls escaped, for an error message. */
export function excerpt(text: string, max = 200): string {
  return text.length > max ? `${escapeControls(text.slice(0, max))}…` : escapeControls(text);
}
