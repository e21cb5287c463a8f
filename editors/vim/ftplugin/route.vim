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

" `matchit` (`%`): jump between matching brackets.
let b:match_words = '{:},\[:\],(:)'

" :RouteFormat rewrites the buffer in the canonical layout (`routelang fmt`).
" The formatter needs a whole file that parses, so it is a command rather than
" 'formatprg' (which `gq` would feed partial ranges).
if !exists('*s:RouteFormat')
  function s:RouteFormat() abort
    let lines = getline(1, '$')
    let out = systemlist('routelang fmt - 2>/dev/null', lines)
    if v:shell_error
      echohl ErrorMsg
      echomsg 'routelang fmt failed (does the file parse? try :!routelang check %)'
      echohl None
      return
    endif
    if out ==# lines
      return
    endif
    let view = winsaveview()
    call setline(1, out)
    if line('$') > len(out)
      silent execute (len(out) + 1) . ',$delete _'
    endif
    call winrestview(view)
  endfunction
endif
command! -buffer -bar RouteFormat call <SID>RouteFormat()

let b:undo_ftplugin = 'setlocal commentstring< comments< formatoptions< iskeyword< suffixesadd<'
      \ . ' expandtab< shiftwidth< softtabstop<'
      \ . ' | unlet! b:match_words | silent! delcommand -buffer RouteFormat'

let &cpo = s:cpo_save
unlet s:cpo_save
