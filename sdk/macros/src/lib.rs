//! The `#[action]` attribute of the Fluxo SDK. Use it through `fluxo_sdk::action`.

use proc_macro::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

/// Marks the function that runs when the action is triggered.
///
/// The function takes the run's `fluxo_sdk::Event` and returns
/// `fluxo_sdk::Result<T>` where `T` is an `Outcome` or `()`. The function stays an
/// ordinary Rust function (tests call it directly under the mock host); in a
/// WebAssembly build the macro also exports it as the component's `run`.
#[proc_macro_attribute]
pub fn action(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(&attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(
    attr: &proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new(attr.span(), "#[action] takes no arguments"));
    }
    let function: ItemFn = syn::parse2(item)?;
    check_signature(&function)?;
    let name = &function.sig.ident;
    Ok(quote! {
        #function

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct FluxoAction;

            impl ::fluxo_sdk::__private::Guest for FluxoAction {
                fn run(
                    event: ::fluxo_sdk::__private::WitEvent,
                ) -> ::core::result::Result<
                    ::fluxo_sdk::__private::WitOutcome,
                    ::fluxo_sdk::__private::WitActionError,
                > {
                    ::fluxo_sdk::__private::run_action(event, #name)
                }
            }

            ::fluxo_sdk::__private::export_action!(FluxoAction);
        };
    })
}

fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let signature = &function.sig;
    if let Some(asyncness) = &signature.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "an action is a synchronous function: host calls block until they complete",
        ));
    }
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new(
            signature.generics.span(),
            "an action cannot be generic",
        ));
    }
    let mut inputs = signature.inputs.iter();
    match (inputs.next(), inputs.next()) {
        (Some(FnArg::Typed(_)), None) => {}
        (Some(FnArg::Receiver(receiver)), _) => {
            return Err(syn::Error::new(
                receiver.span(),
                "an action is a free function, not a method",
            ));
        }
        (Some(_), Some(extra)) => {
            return Err(syn::Error::new(
                extra.span(),
                "an action takes exactly one argument: `event: Event`",
            ));
        }
        (None, _) => {
            return Err(syn::Error::new(
                signature.paren_token.span.join(),
                "an action takes exactly one argument: `event: Event`",
            ));
        }
    }
    if let ReturnType::Default = signature.output {
        return Err(syn::Error::new(
            signature.ident.span(),
            "an action returns `Result<Outcome>` (or `Result<()>`)",
        ));
    }
    Ok(())
}
