//! Nix's own formats: store paths and ATerm `.drv` files. Kept small and
//! tested against files real Nix writes (crates.io only has a placeholder of
//! `nix-compat`).
