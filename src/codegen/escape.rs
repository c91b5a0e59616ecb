//! Escaping for the three languages a description string can reach: Nix
//! (string literals and attribute names), Python (string literals in the
//! generated testScript) and the guest shell.
