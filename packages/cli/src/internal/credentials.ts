/**
 * Service URLs (`--cluster postgres://…`, `--redis redis://…`) may carry a password: what the CLI prints about
 * them (usage errors, connection failures) shows the URL with the password masked.
 */

/**
 * `url` with the password of its user info replaced by `***`. Works on text that does not parse as a URL too
 * (the usage error for a malformed one quotes it): everything between `scheme://user:` and the last `@` before
 * the host's first `/`.
 */
export const hidePassword = (url: string): string => url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*:)[^/]*@/i, "$1***@")
