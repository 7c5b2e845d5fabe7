// Package cmdtest makes revocation commands for tests the way
// revoker.Issuer makes them: with the real target's identity, the role's
// oid as the target shows it at the call, a lifetime around now and a
// nonce. They are unsigned; sign them with a revoker.Signer.
package cmdtest
