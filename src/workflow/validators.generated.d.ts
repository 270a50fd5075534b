// Types of the module `npm run build` generates with scripts/validators.mjs.
import type { ErrorObject } from 'ajv';

/** A validator in Ajv standalone code: `errors` is set as a compiled one sets it. */
export type StandaloneValidator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

/** The workflow schema `validateWorkflow` was generated from, as `JSON.stringify` writes it. */
export declare const workflowSchemaJson: string;

/** The built-in registry's workflow schema, compiled with WORKFLOW_AJV_OPTIONS (validate.ts). */
export declare const validateWorkflow: StandaloneValidator;

/** The JSON Schema draft-07 meta-schema, compiled with the options of input-schema.ts. */
export declare const validateDraft07: StandaloneValidator;

/**
 * Validators of the built-in actions' input schemas (and of the properties-only schemas their
 * `checks` use), compiled with the options of src/providers/registry.ts, by the schema's
 * `JSON.stringify` text.
 */
export declare const actionInputValidators: ReadonlyMap<string, StandaloneValidator>;
