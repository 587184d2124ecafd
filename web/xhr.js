// What an XMLHttpRequest answered, for the two upload paths (one PUT, tus PATCHes) that use XHR
// rather than fetch for its upload progress events.

/** The response body as JSON; a body that is not JSON becomes `{message}` (its first 300 chars). */
export function responseBody(xhr) {
  try {
    return xhr.responseText ? JSON.parse(xhr.responseText) : null;
  } catch {
    return { message: xhr.responseText.slice(0, 300) };
  }
}
