//! Embeds an rpath to libtorch's `lib/` (found by torch-sys from the torch virtualenv) so the
//! library loads into OMNeT++ without LD_LIBRARY_PATH.

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
