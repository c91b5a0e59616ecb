//! `nixvm-gen report`: the fan-in. Reads the results of many check builds
//! ([`read`]), builds one view of them ([`view`]) and renders it as a
//! terminal [`summary`], one merged [`junit`] file and a self-contained
//! [`html`] page.

pub mod html;
pub mod junit;
pub mod read;
pub mod summary;
pub mod view;
