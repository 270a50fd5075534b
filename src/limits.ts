/**
 * The bounds on what a workflow file may hold (README "Limits", docs/ERRORS.md). Each is far
 * above what a hand-written or generated workflow needs and low enough that checking a file
 * at every limit at once takes well under a second: past them, ferry reports where instead of
 * working for minutes or overflowing the stack. Data belongs in files read by `loop.file`,
 * which are streamed and have no such bound.
 */

/**
 * Bytes of one workflow file: 1 MiB, some 25,000 lines, where real workflows have hundreds.
 * Parsing YAML takes about half a second per MiB, and a parsed MiB holds some 150 MB.
 */
export const MAX_FILE_BYTES = 1024 * 1024;

/** Steps in one workflow, loops and the steps inside them included. */
export const MAX_STEPS = 10_000;

/** Loops inside loops. */
export const MAX_LOOP_DEPTH = 10;

/** Characters of one string holding templates. */
export const MAX_TEMPLATE_LENGTH = 64 * 1024;

/** `<<#if>>`, `<<#each>>`… blocks inside one another in one template. */
export const MAX_BLOCK_DEPTH = 50;

/** Sub-expressions `(helper …)` inside one another in one `<<…>>`. */
export const MAX_SUBEXPRESSION_DEPTH = 50;

/**
 * Keys and list items in the `inputs:` schemas of one trigger, counted at every level (their
 * depth is bounded by YAML's 100 levels). A run compiles them to code before it starts; a
 * few thousand properties make that code nest past what V8 can parse.
 */
export const MAX_INPUT_SCHEMA_NODES = 1000;

/** Problems reported for one file; past it one more issue says so (nobody reads 50,000 lines). */
export const MAX_ISSUES = 1000;
