// Package tr31 reads and writes TR-31 / ANSI X9.143 key blocks of version
// D: a key wrapped under an AES key block protection key (KBPK) together
// with a clear header that says what the key is for (key usage, algorithm,
// mode of use, key version, exportability, key context) and optional
// blocks, all bound by a CMAC.
//
// Start with Parse (structure and header only, no key), Unwrap (parse,
// authenticate, decrypt) and Wrap (build). Version D, as ANSI X9.143-2022
// §7 and ASC X9 TR-31:2018 §5.3.3 define it:
//
//   - KBEK and KBAK are derived from the KBPK with AES-CMAC (SP 800-108
//     counter mode): CMAC(KBPK, counter || usage || 00 || algorithm ||
//     length), usage 0000 for the encryption key and 0001 for the MAC key,
//     algorithm 0002/0003/0004 and length 0080/00C0/0100 for an AES-128,
//     -192 or -256 KBPK; one CMAC block per 128 bits, truncated.
//   - The clear key data is the key's length in bits (2 bytes), the key,
//     and padding to a whole number of AES blocks.
//   - The MAC is AES-CMAC under the KBAK of the header's ASCII bytes
//     followed by the clear key data; it is 16 bytes.
//   - The key data is encrypted with AES-CBC under the KBEK with the MAC as
//     the IV.
//   - The block is the header, the encrypted key data in upper-case hex and
//     the MAC in upper-case hex; its length field counts all of it.
//
// The parser is strict: every header field is checked against the values
// X9.143 defines (numeric values, which X9.143 reserves for proprietary
// use, are accepted as such), optional blocks are parsed with their short
// or extended lengths and kept in order, unknown ones intact, and every
// refusal is a *FieldError naming the field. Which keys dcaas imports and
// how header values map to its key policies is internal/kms's business, not
// this package's.
//
// Proof: testdata/vectors.json holds the version D examples of TR-31:2018
// and ANSI X9.143:2021 and HSM-made blocks as reproduced by public test
// suites (testdata/README.md names each source); the tests unwrap each to
// its published key and rebuild each byte for byte.
package tr31
