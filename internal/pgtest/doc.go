// Package pgtest gives tests a real PostgreSQL: the server at
// TEST_DATABASE_URL (default the local "test" database), a private schema per
// test, and unique role names, all removed at cleanup. A test that cannot
// reach the server fails; it never skips.
package pgtest
