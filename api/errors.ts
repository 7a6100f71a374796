// Anything can be thrown: messages are read through here, never by casting to Error.

/** The error's message, or the thrown value as text. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
