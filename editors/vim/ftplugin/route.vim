" Vim filetype plugin for routelang (*.route)
if exists('b:did_ftplugin')
  finish
endif
let b:did_ftplugin = 1

let s:cpo_save = &cpo
set cpo&vim

setlocal commentstring=#\ %s
setlocal comments=:#
setlocal formatoptions-=t formatoptions+=croql
" Names may contain dashes (llama-3-70b), so let word motions treat them as one word.
setlocal iskeyword=@,48-57,_,192-255,-
setlocal suffixesadd=.route
setlocal expandtab shiftwidth=4 softtabstop=4

" `matchit`: jump between a rule/test/target keyword and its braces.
let b:match_words = '{:},\[:\],(:)'

let b:undo_ftplugin = 'setlocal commentstring< comments< formatoptions< iskeyword< suffixesadd<'
      \ . ' expandtab< shiftwidth< softtabstop<'
      \ . ' | unlet! b:match_words'

let &cpo = s:cpo_save
unlet s:cpo_save
